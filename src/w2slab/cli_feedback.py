"""The feedback half's subcommands (`w2slab critiques ...`, `w2slab judge serve`, `w2slab selfimprove run`,
`w2slab oversight run`, `w2slab redteam classifier|run|audit`, `w2slab cai run|constitution`): thin shells over
:mod:`w2slab.feedback` and :mod:`w2slab.judging`, registered by :func:`add_commands`."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path


def _list(text: str) -> tuple[str, ...]:
    items = tuple(t.strip() for t in text.split(",") if t.strip())
    if not items:
        raise argparse.ArgumentTypeError(f"expected a comma-separated list, got {text!r}")
    return items


def _seeds(text: str) -> tuple[int, ...]:
    try:
        seeds = tuple(int(t) for t in _list(text))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers >= 0, got {text!r}") from None
    if any(s < 0 for s in seeds):
        raise argparse.ArgumentTypeError(f"expected comma-separated integers >= 0, got {text!r}")
    return seeds


def add_commands(sub, *, positive_int, non_negative_int, unit_interval, probability, port, add_dirs) -> None:
    """Register `critiques bugs|run`, `judge serve`, `selfimprove run`, `oversight run`,
    `redteam classifier|run|audit` and `cai run|constitution` on the main parser's subcommands (the argument types
    and the folder options come from cli.py, so every command checks its input alike)."""
    critiques = sub.add_parser("critiques", help="verified bugs, AI critiques and judges with and without them")
    csub = critiques.add_subparsers(dest="action", required=True)
    bugs = csub.add_parser("bugs", help="insert bugs into reference solutions, keep those the tests catch")
    bugs.add_argument("--source", action="append", required=True,
                      help="mbpp, humaneval or a JSONL file of problems (repeatable)")
    bugs.add_argument("--limit", type=positive_int, help="the first N problems of each source")
    bugs.add_argument("--per-kind", type=non_negative_int, default=1, help="mutants tried per kind and problem")
    bugs.add_argument("--kinds", type=_list, help="comma-separated mutation kinds (default: all)")
    bugs.add_argument("--tamper-model", help="an LM that writes subtle bugs too (zoo decoder or .gguf)")
    bugs.add_argument("--seed", type=non_negative_int, default=0, help="which mutation sites are drawn")
    bugs.add_argument("--out", help="write the kept programs as JSONL here (atomically)")
    add_dirs(bugs, data=True)

    run = csub.add_parser("run", help="critics critique, judges judge with and without critiques; rows to the store")
    run.add_argument("config", nargs="?", help="TOML file of CritiquesConfig fields (flags below override it)")
    run.add_argument("--experiment", help="name of the rows in the store and of the output folder")
    run.add_argument("--source", action="append", dest="sources", help="mbpp, humaneval or a JSONL file (repeatable)")
    run.add_argument("--limit", type=positive_int, help="the first N problems of each source")
    run.add_argument("--n-problems", type=positive_int, help="judged problems (each: one correct, one buggy program)")
    run.add_argument("--critics", type=_list, help="comma-separated critic models")
    run.add_argument("--judges", type=_list, help="comma-separated judge models")
    run.add_argument("--seeds", type=_seeds, help="critique sampling seeds, e.g. 0,1,2")
    run.add_argument("--max-tokens", type=positive_int, help="critique length cap in tokens")
    run.add_argument("--tamper-model", help="an LM that writes subtle bugs (adds kind lm_tamper)")
    run.add_argument("--tamper-problems", type=non_negative_int, help="problems the tamper model tries")
    run.add_argument("--train-critic", help="a critic model to LoRA-train on problems outside the judged set")
    run.add_argument("--backend", choices=("llamacpp", "transformers", "openai"), help="LM backend for all models")
    run.add_argument("--base-url", help="OpenAI-compatible server (--backend openai)")
    add_dirs(run, data=True, results=True)

    judge = sub.add_parser("judge", help="the local web page where people judge items")
    jsub = judge.add_subparsers(dest="action", required=True)
    serve = jsub.add_parser("serve", help="serve the judging page on 127.0.0.1 until interrupted")
    serve.add_argument("--items", required=True, help="items.jsonl written by `w2slab critiques run` or "
                                                      "`w2slab oversight run`, or a `w2slab redteam audit` sheet")
    serve.add_argument("--experiment", required=True, help="experiment name the judgements are stored under")
    serve.add_argument("--port", type=port, default=8765, help="port on 127.0.0.1")
    serve.add_argument("--per-session", type=positive_int, default=20, help="items per person")
    serve.add_argument("--critique-share", type=unit_interval, default=0.5,
                       help="share of a session's items shown with an AI critique (audit sheets have none)")
    serve.add_argument("--assistant", help="sandwiching with people: this model reads the story and answers the "
                                           "person's questions (oversight items only; a zoo decoder)")
    serve.add_argument("--assistant-rounds", type=positive_int, default=2,
                       help="questions a person may ask the assistant per item")
    serve.add_argument("--debaters", help="interactive debate with people: this model reads the story and argues for "
                                          "each answer, and answers the person's questions (oversight items only; a "
                                          "zoo decoder)")
    serve.add_argument("--debate-questions", type=positive_int, default=2,
                       help="questions a person may ask the debaters per item (each answered by both: one more round)")
    add_dirs(serve, data=True, results=True)

    selfimprove = sub.add_parser("selfimprove", help="train a model on its own majority votes, round by round")
    ssub = selfimprove.add_subparsers(dest="action", required=True)
    srun = ssub.add_parser("run", help="every model x task cell, filter, seed and round; rows to the store")
    srun.add_argument("config", nargs="?", help="TOML file of SelfImproveStudy fields (flags below override it)")
    srun.add_argument("--experiment", help="name of the rows in the store and of the output folder")
    srun.add_argument("--models", type=_list, help="comma-separated zoo decoders, e.g. smollm2,qwen-coder-0.5b")
    srun.add_argument("--tasks", type=_list, help="comma-separated tasks: gsm8k, strategyqa, openbookqa, sciq, piqa")
    srun.add_argument("--filters", type=_list, help="comma-separated: majority, oracle, none, gold")
    srun.add_argument("--seeds", type=_seeds, help="sampling and training seeds, e.g. 0,1,2")
    srun.add_argument("--rounds", type=positive_int, help="training rounds after the base model")
    srun.add_argument("--k", type=positive_int, help="samples per question")
    srun.add_argument("--tau", type=unit_interval, help="keep a question when its majority's vote share >= tau")
    srun.add_argument("--n-train", type=positive_int, help="training questions (the first N of the train split)")
    srun.add_argument("--n-test", type=positive_int, help="test questions (the first N of the test split)")
    srun.add_argument("--max-tokens", type=positive_int, help="answer length cap in tokens")
    srun.add_argument("--parallel", type=positive_int,
                      help="llama.cpp slots (default 4); 1 makes greedy decoding bit-identical between fresh runs")
    add_dirs(srun, data=True, results=True)

    oversight = sub.add_parser("oversight", help="consultancy, debate and sandwiching for a judge without the passage")
    osub = oversight.add_subparsers(dest="action", required=True)
    orun = osub.add_parser("run", help="experts argue, judges decide; rows to the store, transcripts to results")
    orun.add_argument("config", nargs="?", help="TOML file of OversightConfig fields (flags below override it)")
    orun.add_argument("--experiment", help="name of the rows in the store and of the output folder")
    orun.add_argument("--task", help="a task with a passage: quail, cosmos_qa, boolq")
    orun.add_argument("--n-questions", type=positive_int, help="the first N questions of the task")
    orun.add_argument("--judges", type=_list, help="comma-separated judge models (they never see the passage)")
    orun.add_argument("--experts", type=_list, help="comma-separated expert models (debaters, consultants, assistants)")
    orun.add_argument("--protocols", type=_list, help="comma-separated: consultancy, debate, sandwich (blind and "
                                                      "expert always run)")
    orun.add_argument("--rounds", type=positive_int, help="argument rounds (sandwich: question-answer exchanges)")
    orun.add_argument("--sequential", action="store_const", const=True, help="debaters speak in turn, not at once")
    orun.add_argument("--seeds", type=_seeds, help="sampling seeds, e.g. 0,1,2")
    orun.add_argument("--max-tokens", type=positive_int, help="argument length cap in tokens")
    orun.add_argument("--judge-scoring", choices=("letters", "answers"),
                      help="letters: log P('A') vs P('B'), both orders; answers: each answer's text scored, no slots")
    orun.add_argument("--best-of", type=positive_int,
                      help="best-of-N arguments: sample N per consultancy/debate argument, keep the most convincing")
    orun.add_argument("--selector", help="who picks among the N: 'judge' (each judge, by its own scoring; default) or "
                                         "a model that scores like a judge")
    orun.add_argument("--interactive", action="store_const", const=True,
                      help="each judge asks the debaters a question before every debate round after the first "
                           "(needs --rounds 2 or more)")
    add_dirs(orun, data=True, results=True)

    redteam = sub.add_parser("redteam", help="a red LM writes test cases, targets reply, a measured classifier flags")
    rsub = redteam.add_subparsers(dest="action", required=True)
    clf = rsub.add_parser("classifier", help="train (or load the cached) harm classifier and print its measured error")
    clf.add_argument("--kind", default="toxicity", choices=("toxicity", "harmlessness", "lm_judge"),
                     help="toxicity (TweetEval offensive), harmlessness (HH-RLHF pairs) or lm_judge (a prompted LM)")
    clf.add_argument("--features", default="minilm", help="encoder for toxicity / harmlessness (a zoo encoder)")
    clf.add_argument("--judge", default="smollm2", help="the LM for lm_judge")
    clf.add_argument("--threshold", type=probability, default=0.5, help="flag replies with P(harm) >= this")
    clf.add_argument("--examples", type=non_negative_int, default=0, help="cap on training examples (0 = all)")
    add_dirs(clf, data=True)
    rrun = rsub.add_parser("run", help="methods x targets x seeds; attacks rows, failure dataset, clusters")
    rrun.add_argument("config", nargs="?", help="TOML file of RedTeamConfig fields (flags below override it)")
    rrun.add_argument("--experiment", help="name of the rows in the store and of the output folder")
    rrun.add_argument("--red-lm", help="the model that writes test cases")
    rrun.add_argument("--targets", type=_list, help="comma-separated target models")
    rrun.add_argument("--system-prompt", help="a system prompt for every target")
    rrun.add_argument("--methods", type=_list, help="comma-separated: zero_shot, few_shot, stochastic, supervised")
    rrun.add_argument("--n-cases", type=positive_int, help="test cases per method, target and seed")
    rrun.add_argument("--seeds", type=_seeds, help="seeds, e.g. 0,1")
    rrun.add_argument("--seed-pool", help="'hh_rlhf' or a .txt / .jsonl file of example test cases")
    rrun.add_argument("--classifier", choices=("toxicity", "harmlessness", "lm_judge"), help="which harm classifier")
    rrun.add_argument("--threshold", type=probability, help="flag replies with P(harm) >= this (in [0, 1])")
    add_dirs(rrun, data=True, results=True)
    raudit = rsub.add_parser("audit", help="audit the classifier on a run's own replies: write a labelling sheet of "
                                           "flagged and unflagged replies, or estimate the harmful share from it")
    raudit.add_argument("cases", help="a run's cases.jsonl, or its folder (results/redteam/<experiment>)")
    raudit.add_argument("--n", type=positive_int, default=40, help="replies drawn per stratum (flagged, unflagged)")
    raudit.add_argument("--seed", type=non_negative_int, default=0, help="seed of the draw")
    raudit.add_argument("--target", help="audit only this target's replies (default: every target in the file)")
    given = raudit.add_mutually_exclusive_group()
    given.add_argument("--labels", help="a labelled sheet: estimate the harmful share from it instead of writing one")
    given.add_argument("--judged", metavar="EXPERIMENT",
                       help="estimate from people's verdicts on the judging page, stored under this experiment "
                            "(`w2slab judge serve --items <sheet> --experiment EXPERIMENT`); each reply's label is "
                            "the majority of its verdicts")
    raudit.add_argument("--sheet", help="where to write the sheet (default: audit.jsonl beside cases.jsonl; an "
                                        "existing sheet is never overwritten)")
    add_dirs(raudit, cache=False, results=True)

    cai = sub.add_parser("cai", help="Constitutional AI: AI feedback vs human feedback, SL-CAI and DPO")
    csub2 = cai.add_subparsers(dest="action", required=True)
    crun = csub2.add_parser("run", help="AI labels vs human labels, gap recovered, optional policy stages")
    crun.add_argument("config", nargs="?", help="TOML file of CaiConfig fields ([[settings]] tables)")
    crun.add_argument("--experiment", help="name of the rows in the store and of the output folder")
    crun.add_argument("--feedback-models", type=_list, help="comma-separated feedback models (default settings each)")
    crun.add_argument("--n-pairs", type=positive_int, help="HH-RLHF harmless-base pairs (20%% held out)")
    crun.add_argument("--seeds", type=_seeds, help="preference-model training subsamples, e.g. 0,1,2")
    crun.add_argument("--constitution", help="a constitution TOML (default: the built-in one)")
    crun.add_argument("--policy", help="a zoo decoder to train with SL-CAI and DPO ('' = skip the policy stages)")
    add_dirs(crun, data=True, results=True)
    cshow = csub2.add_parser("constitution", help="print the default constitution (a TOML to copy and edit)")
    cshow.add_argument("--check", help="check a constitution file and print its principles")


def cmd_critiques(args) -> None:
    """`w2slab critiques bugs`: build and count the verified bugs; `run`: the whole critiques experiment."""
    if args.action == "bugs":
        return _bugs(args)
    from .feedback.critiques_run import CritiquesConfig, run_critiques

    overrides = {k: getattr(args, k) for k in ("experiment", "sources", "limit", "n_problems", "critics", "judges",
                                               "seeds", "max_tokens", "tamper_model", "tamper_problems",
                                               "train_critic", "backend", "base_url")}
    if overrides["sources"]:
        overrides["sources"] = tuple(overrides["sources"])
    config = (CritiquesConfig.from_toml(args.config, **overrides) if args.config else
              CritiquesConfig(**{k: v for k, v in overrides.items() if v is not None}))
    result = run_critiques(config, results_dir=args.results_dir, data_dir=args.data_dir, cache_dir=args.cache_dir,
                           progress=sys.stderr.isatty())
    print(format_result(result))


def format_result(result: dict) -> str:
    """The headline table of a critiques run, as text."""
    from .report.table import format_rows, interval_text

    rows = []
    for judge, jr in result["judges"].items():
        for critic, s in jr["critics"].items():
            gaps = s["gap_recovered"]
            rows.append({"judge": judge, "critic": critic, "alone_acc": s["alone"]["accuracy"],
                         "assisted_acc": s["assisted"]["accuracy"], "catch": s["assisted"]["catch_rate"],
                         "false_alarm": s["assisted"]["false_alarm"],
                         "uplift": interval_text(s["uplift"]),
                         "gap_vs_tests": _gap(gaps["tests"]), "gap_vs_critic": _gap(gaps["critic_alone"])})
    quality = [{"critic": c, **{k: q[k] for k in ("localised", "claims_on_buggy", "hallucinated")}}
               for c, q in result["quality"].items()]
    out = [f"{result['n_items']} programs ({result['n_problems']} problems, half buggy), "
           f"{len(result['config']['seeds'])} critique seeds",
           format_rows(rows, tuple(rows[0])) if rows else "no judges",
           "", "critique quality (shares):", format_rows(quality, ("critic", "localised", "claims_on_buggy",
                                                                   "hallucinated"))]
    if result.get("training"):
        t = result["training"]
        out.append(f"\ncritic training ({t['critic']}, {t['train_examples']} examples from {t['train_problems']} "
                   f"problems): localised {t['before']['localised']:.3f} -> {t['after']['localised']:.3f}, "
                   f"hallucinated {t['before']['hallucinated']:.3f} -> {t['after']['hallucinated']:.3f} "
                   f"on {t['eval_items']} held-out programs")
    return "\n".join(out)


def _gap(gap: dict) -> str:
    if not gap["defined"]:
        return "undefined"
    return f"{gap['pgr']:+.2f} [{gap['pgr_ci'][0]:+.2f}, {gap['pgr_ci'][1]:+.2f}]"


def _bugs(args) -> None:
    import json

    from .feedback.bugs import KINDS, BugSetConfig, build_bug_set
    from .io import atomic_path
    from .paths import cache_dir
    from .runner.cache import StageCache
    from .tasks.code import load_code_problems

    problems = [p for s in args.source for p in load_code_problems(s, data_dir=args.data_dir, limit=args.limit)]
    config = BugSetConfig(kinds=args.kinds or KINDS, per_kind=args.per_kind, seed=args.seed)
    tamper = None
    if args.tamper_model:
        from .lm import load_lm

        tamper = load_lm(args.tamper_model, cache=args.cache_dir, progress=sys.stderr.isatty())
    try:
        records, report = build_bug_set(problems, config=config, tamper_lm=tamper,
                                        cache=StageCache(cache_dir(args.cache_dir) / "stages"))
    finally:
        if tamper is not None:
            tamper.close()
    excluded = ", ".join(f"{k}: {v['count']}" for k, v in report["excluded"].items())
    print(f"{report['kept_problems']} of {report['problems']} problems usable ({excluded})")
    for kind in sorted(set(report["candidates"]) | set(report["verified"])):
        print(f"  {kind:18s} tried {report['candidates'].get(kind, 0):5d}   kept {report['verified'].get(kind, 0):5d}")
    if report.get("tamper"):
        print(f"  tampering: {report['tamper']}")
    if args.out:
        with atomic_path(args.out) as tmp:
            tmp.write_text("".join(json.dumps(r, sort_keys=True) + "\n" for r in records), encoding="utf-8")
        print(f"{len(records)} programs written to {args.out}")


def cmd_selfimprove(args) -> None:
    """`w2slab selfimprove run`: the self-improvement study; prints the gap-recovered table."""
    from .feedback.selfimprove_run import SelfImproveStudy, run_selfimprove_study
    from .report.selfimprove import selfimprove_gap_table
    from .report.table import format_rows

    overrides = {k: getattr(args, k) for k in ("experiment", "models", "tasks", "filters", "seeds", "rounds", "k",
                                               "tau", "n_train", "n_test", "max_tokens", "parallel")}
    study = (SelfImproveStudy.from_toml(args.config, **overrides) if args.config else
             SelfImproveStudy(**{k: v for k, v in overrides.items() if v is not None}))
    cells = run_selfimprove_study(study, results_dir=args.results_dir, data_dir=args.data_dir,
                                  cache_dir=args.cache_dir, progress=sys.stderr.isatty())
    rows = selfimprove_gap_table([s for c in cells for s in c["summaries"]])
    stopped = [f"{c['config']['model']} on {c['config']['task']}, {ch['filter']} seed {ch['seed']}: {ch['stopped']}"
               for c in cells for ch in c["chains"] if ch["stopped"]]
    columns = ("task", "model", "filter", "round", "base_acc", "trained_acc", "reference", "reference_acc", "change",
               "gap_recovered", "one_answer")
    print(format_rows(rows, columns) if rows else "no gap rows (see below)")
    for line in stopped:
        print(f"stopped early: {line}")


def cmd_oversight(args) -> None:
    """`w2slab oversight run`: the oversight study; prints judge accuracy per protocol and the gap recovered."""
    from .feedback.oversight_run import OversightConfig, run_oversight
    from .report.judging import oversight_table
    from .report.table import format_rows
    from .runner.store import ResultsStore
    from .paths import results_dir

    overrides = {k: getattr(args, k) for k in ("experiment", "task", "n_questions", "judges", "experts", "protocols",
                                               "rounds", "sequential", "seeds", "max_tokens", "judge_scoring", "best_of",
                                               "selector", "interactive")}
    config = (OversightConfig.from_toml(args.config, **overrides) if args.config else
              OversightConfig(**{k: v for k, v in overrides.items() if v is not None}))
    result = run_oversight(config, results_dir=args.results_dir, data_dir=args.data_dir, cache_dir=args.cache_dir,
                           progress=sys.stderr.isatty())
    summaries = ResultsStore(results_dir(args.results_dir) / "results.sqlite").query(
        "summaries", experiment=config.experiment)
    rows = oversight_table([s for s in summaries if s["result"].get("protocol") == "oversight"])
    print(f"{result['n']} questions of {config.task}; judges alone: "
          + ", ".join(f"{j} {r['blind']['accuracy']:.3f}" for j, r in result["judges"].items())
          + "; experts alone: " + ", ".join(f"{e} {r['accuracy']:.3f}" for e, r in result["experts"].items()))
    print(format_rows(rows, ("judge", "expert", "protocol", "judge_alone", "with_protocol", "expert_alone", "change",
                             "gap_recovered", "debate_vs_consultancy")))


def cmd_redteam(args) -> None:
    """`w2slab redteam classifier`: a harm classifier's measured error; `run`: the red-teaming study; `audit`:
    the classifier audited on a run's own replies."""
    from .report.table import format_rows

    if args.action == "classifier":
        from .feedback.harm import train_classifier

        classifier = train_classifier(args.kind, features=args.features, judge=args.judge, data_dir=args.data_dir,
                                      cache=args.cache_dir, n_train=args.examples or None)
        classifier.set_threshold(args.threshold)
        m = classifier.metrics
        print(f"{args.kind} classifier on {m['evaluated_on']} ({m['n_pos']} offensive, {m['n_neg']} not), threshold "
              f"{m['threshold']}: precision {m['precision']:.3f}, recall {m['recall']:.3f}, false positives "
              f"{m['fpr']:.3f}, false negatives {m['fnr']:.3f}, AUC {m['auc']:.3f}, ECE {m['ece']:.3f}"
              + (f"; HH-RLHF held-out pairwise accuracy {m['pairwise_accuracy_heldout']:.3f}"
                 if m.get("pairwise_accuracy_heldout") is not None else ""))
        return
    if args.action == "audit":
        return _redteam_audit(args)
    from .feedback.redteam_run import RedTeamConfig, run_redteam

    overrides = {k: getattr(args, k) for k in ("experiment", "red_lm", "targets", "system_prompt", "methods",
                                               "n_cases", "seeds", "seed_pool", "classifier", "threshold")}
    config = (RedTeamConfig.from_toml(args.config, **overrides) if args.config else
              RedTeamConfig(**{k: v for k, v in overrides.items() if v is not None}))
    result = run_redteam(config, results_dir=args.results_dir, data_dir=args.data_dir, cache_dir=args.cache_dir,
                         progress=sys.stderr.isatty())
    from .report.redteam import attack_table

    m = result["classifier"]
    print(f"classifier {config.classifier}: precision {m['precision']:.3f}, recall {m['recall']:.3f}, "
          f"false positives {m['fpr']:.3f} on {m['evaluated_on']}. Generated text (may be offensive) is in the "
          "results folder only.")
    print(format_rows(attack_table(result["attacks"]), ("target", "method", "seeds", "cases", "flagged_raw",
                                                         "success_corrected", "self_bleu", "diversity", "refusals")))


def _redteam_audit(args) -> None:
    """`w2slab redteam audit`: write a labelling sheet, or estimate from a labelled one."""
    from .errors import ConfigError
    from .feedback import redteam_audit as A

    cases = A.read_cases(args.cases)
    if args.target:
        known = sorted({c["target"] for c in cases})
        cases = [c for c in cases if c["target"] == args.target]
        if not cases:
            raise ConfigError(f"--target {args.target!r} has no replies in {args.cases} (targets: {', '.join(known)})")
    if args.labels or args.judged:
        if args.judged:
            from .paths import results_dir
            from .runner.store import ResultsStore

            store = ResultsStore(results_dir(args.results_dir) / "results.sqlite")
            labels, agreement = A.labels_from_verdicts(store.query("judgements", experiment=args.judged))
            pairs = ("no reply judged twice" if agreement["agreement"] is None else
                     f"{agreement['multi']} judged twice or more, pairwise agreement {agreement['agreement']:.2f}")
            print(f"{agreement['verdicts']} verdicts by {agreement['people']} people on {agreement['replies']} replies "
                  f"({pairs}; {agreement['ties']} ties left unlabelled)")
        else:
            labels = A.read_audit_labels(args.labels)
        e = A.audit_estimate(cases, labels)
        (hf, nf), (hu, nu) = e["labelled"]["flagged"], e["labelled"]["unflagged"]
        lo, hi = e["harmful_share_ci"]
        print(f"{e['n_replies']} replies, {e['n_flagged']} flagged ({100 * e['flagged_share']:.1f}%). Labelled: "
              f"{hf} of {nf} flagged and {hu} of {nu} unflagged replies harmful. Harmful share of all replies "
              f"{100 * e['harmful_share']:.1f}% [{100 * lo:.1f}%, {100 * hi:.1f}%]; the classifier's precision on "
              "these replies " + ("—" if e["precision"] is None else f"{e['precision']:.3f} "
              f"[{e['precision_ci'][0]:.3f}, {e['precision_ci'][1]:.3f}]") + "; flagged and harmful by method: "
              + ", ".join(f"{m} {h}/{k}" for m, (h, k) in e["flagged_harmful_by_method"].items()))
        return
    folder = Path(args.cases) if Path(args.cases).is_dir() else Path(args.cases).parent
    sheet = Path(args.sheet) if args.sheet else folder / "audit.jsonl"
    if sheet.exists():
        raise ConfigError(f"{sheet} already exists (label it and pass --labels {sheet}, or name another --sheet)")
    rows = A.audit_sample(cases, args.n, seed=args.seed)
    A.write_audit_sheet(sheet, rows)
    print(f"wrote {len(rows)} replies to {sheet} (generated text, may be offensive: keep it out of git). Set "
          f"\"harmful\": true or false on each line, then: w2slab redteam audit {args.cases} --labels {sheet}")


def cmd_cai(args) -> None:
    """`w2slab cai constitution`: the default (or a checked) constitution; `run`: AI vs human feedback."""
    from .feedback import cai as C

    if args.action == "constitution":
        if args.check:
            constitution = C.load_constitution(args.check)
            print(f"{args.check}: {len(constitution.principles)} principles ("
                  + ", ".join(p.name for p in constitution.principles) + f"), {len(constitution.comparisons)} "
                  f"comparison questions, {len(constitution.exemplars)} exemplars")
        else:
            print(C.DEFAULT_CONSTITUTION.strip())
        return
    from .feedback.cai_run import CaiConfig, run_cai
    from .report.table import format_rows, gap_text, interval_text

    overrides = {k: getattr(args, k) for k in ("experiment", "n_pairs", "seeds", "constitution", "policy")}
    if args.feedback_models:
        overrides["settings"] = tuple({"model": m} for m in args.feedback_models)
    config = (CaiConfig.from_toml(args.config, **overrides) if args.config else
              CaiConfig(**{k: v for k, v in overrides.items() if v is not None}))
    result = run_cai(config, results_dir=args.results_dir, data_dir=args.data_dir, cache_dir=args.cache_dir,
                     progress=sys.stderr.isatty())
    rows = [{"feedback": s["label"], "agreement": interval_text({"mean": s["agreement"]["agreement"],
                                                                 "ci": s["agreement"]["ci"]}),
             "flips": "-" if s["flip_rate"] is None else f"{s['flip_rate']:.2f}",
             "AI alone": f"{s['gap']['floor']:.3f}", "PM on AI labels": f"{s['gap']['transfer']:.3f}",
             "PM on human labels": f"{s['gap']['ceiling']:.3f}",
             "gap recovered": gap_text(s["gap"], "undefined"),
             "s per 1k labels": f"{s['per_1000_s']:.0f}"} for s in result["settings"]]
    print(f"{result['pairs']['n']} HH-RLHF pairs ({result['pairs']['held_out']} held out by conversation)")
    print(format_rows(rows, tuple(rows[0])))
    if result["policy"]:
        p = result["policy"]
        for stage in ("before", "after_sl", "after_dpo"):
            if stage in p:
                m = p[stage]
                harm = ", ".join(f"{kind} {h['raw']:.3f}" for kind, h in m["harm"].items())
                print(f"policy {stage}: flagged ({harm}), reward {m['reward']:+.3f}, refusals "
                      f"{m['refusal_rate']:.3f}, {m['mean_words']:.0f} words")


def cmd_judge(args) -> None:
    """`w2slab judge serve`: the human-judging page on 127.0.0.1 until interrupted."""
    from .judging import JudgingApp, JudgingServer, read_items
    from .paths import results_dir
    from .runner.store import ResultsStore

    items = read_items(args.items)
    store = ResultsStore(results_dir(args.results_dir) / "results.sqlite")
    assistant = debaters = None
    if args.assistant or args.debaters:
        from .judging import LiveAssistant, LiveDebaters, passages_for
        from .lm import load_lm

        questions = passages_for(items, data_dir=args.data_dir,
                                 helper="a live assistant" if args.assistant else "live debaters")
        lms = {name: load_lm(name, cache=args.cache_dir) for name in {args.assistant, args.debaters} - {None}}
        if args.assistant:
            assistant = LiveAssistant(lms[args.assistant], questions, name=args.assistant,
                                      rounds=args.assistant_rounds)
        if args.debaters:
            debaters = LiveDebaters(lms[args.debaters], questions, name=args.debaters, rounds=args.debate_questions)
    try:
        app = JudgingApp(items, store, experiment=args.experiment, per_session=args.per_session,
                         critique_share=args.critique_share, assistant=assistant, debaters=debaters)
        server = JudgingServer(app, port=args.port)
        print(f"judging page at {server.url}/ ({len(items)} items; judgements go to {store.path}; Ctrl-C to stop)",
              flush=True)
        try:
            server.serve_forever()
        except KeyboardInterrupt:
            pass
        finally:
            server.close()
    finally:
        for lm in {id(h.lm): h.lm for h in (assistant, debaters) if h is not None}.values():
            lm.close()
