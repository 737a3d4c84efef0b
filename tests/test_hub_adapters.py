"""The Hugging Face Hub path: rows shaped like the Hub datasets' columns (rebuilt here from the local mirror's
files, since the Hub is unreachable offline) go through each task's ``hub_rows`` adapter and its converter, and
must give exactly the items of the local path."""
import numpy as np

from w2slab.tasks import get_spec, items_to_task, read_rows


def _same(name, data_dir, to_hub):
    spec = get_spec(name)
    local_rows = read_rows(spec, data_dir)
    local = items_to_task(name, spec.convert(local_rows))
    hub = items_to_task(name, spec.convert(spec.hub_rows([{**to_hub(r), "_src": r["_src"]} for r in local_rows])))
    assert hub.texts == local.texts and np.array_equal(hub.labels, local.labels)


def test_openbookqa_hub_columns(data_dir):
    _same("openbookqa", data_dir, lambda r: {"question_stem": r["question"]["stem"], "answerKey": r["answerKey"],
                                             "choices": {"text": [c["text"] for c in r["question"]["choices"]],
                                                         "label": [c["label"] for c in r["question"]["choices"]]}})


def test_anli_hub_columns(data_dir):
    _same("anli", data_dir, lambda r: {"premise": r["context"], "hypothesis": r["statement"],
                                       "label": "enc".index(r["gold_label"])})


def test_dream_hub_columns(data_dir):
    _same("dream", data_dir, lambda r: {"dialogue": r["dialogue"].split("\n"), "question": r["question"],
                                        "choice": r["choice"], "answer": r["answer"]})


def test_truthfulqa_hub_columns(data_dir):
    _same("truthfulqa", data_dir, lambda r: {"question": r["Question"],
                                             "correct_answers": [a.strip() for a in r["Correct Answers"].split(";")],
                                             "incorrect_answers": [a.strip() for a in r["Incorrect Answers"].split(";")]})


def test_strategyqa_and_hhh_hub_columns(data_dir):
    _same("strategyqa", data_dir, lambda r: {"inputs": r["input"], "multiple_choice_targets": list(r["target_scores"]),
                                             "multiple_choice_scores": list(r["target_scores"].values())})
    _same("hhh_honest", data_dir, lambda r: {"input": r["input"], "targets": {
        "choices": list(r["target_scores"]), "labels": list(r["target_scores"].values())}})


def test_ethics_utilitarianism_and_sst2_glue_hub_columns(data_dir):
    _same("ethics_utilitarianism", data_dir, lambda r: {"baseline": r["more"], "less_pleasant": r["less"]})
    _same("sst2_glue", data_dir, lambda r: {"sentence": r["text"], "label": r["label"]})
