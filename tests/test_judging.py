"""The human-judging page end to end in a real headless Chromium (Playwright), writing to a real SQLite store."""
import html
import json
import shutil
import urllib.parse
import urllib.error
import urllib.request

import pytest

from w2slab.feedback import critiques as C
from w2slab.feedback.bugs import BugSetConfig, build_bug_set
from w2slab.judging import JudgingApp, JudgingServer
from w2slab.runner.store import ResultsStore
from w2slab.tasks.code import load_code_problems

N_ITEMS = 4


@pytest.fixture(scope="module")
def items(data_dir):
    problems = load_code_problems("mbpp", data_dir=data_dir, limit=8)
    records, _ = build_bug_set(problems, config=BugSetConfig(kinds=("comparison", "arithmetic")))
    chosen = C.balanced_items(records, n_problems=3, seed=0)
    # the critique shown is the verified ground truth's (what a perfect critic would write)
    return [{**i, "critiques": {"oracle-critic": C.target_critique(i)}} for i in chosen]


@pytest.fixture()
def server(items, tmp_path):
    store = ResultsStore(tmp_path / "results.sqlite")
    app = JudgingApp(items, store, experiment="people", per_session=N_ITEMS, critique_share=0.5, seed=0)
    with JudgingServer(app) as srv:
        yield srv, store


def _post(url: str, data: dict) -> int:
    body = urllib.parse.urlencode(data).encode()
    request = urllib.request.Request(url, data=body, method="POST")
    opener = urllib.request.build_opener(_NoRedirect)
    try:
        return opener.open(request).status
    except urllib.error.HTTPError as err:
        return err.code


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None


def _start_session(playwright, url: str, name: str):
    """Headless Chromium on the start page: type a name, press Start. Returns (browser, page)."""
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    assert chromium, "Chromium is missing: `make test` installs it (Debian package chromium)"
    browser = playwright.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
    page = browser.new_page()
    page.goto(url + "/")
    page.fill("#judge", name)
    page.click("#start")
    return browser, page


def test_a_person_judges_a_session_in_chromium(server, items):
    from playwright.sync_api import sync_playwright

    srv, store = server
    secrets_on_page = {"buggy", "changed_lines", "oracle-critic", "off_by_one", "wrong_variable", "dropped_condition",
                       "return_value", "lm_tamper", "tests_failed"}
    with sync_playwright() as p:
        browser, page = _start_session(p, srv.url, "alice")
        shown_critiques = 0
        for k in range(N_ITEMS):
            page.wait_for_selector("#code")
            content = page.content()
            assert f"Item {k + 1} of {N_ITEMS}" in content
            assert not any(word in content for word in secrets_on_page)  # blinded: label, kind, critic
            shown_critiques += page.locator("#critique").count()
            page.wait_for_timeout(1100)  # the timer ticks
            assert page.inner_text("#timer") != "0 s"
            page.click("#yes" if k % 2 == 0 else "#no")
        page.wait_for_selector("#done")
        assert f"judged {N_ITEMS} of {N_ITEMS}" in page.inner_text("#done")
        browser.close()
    assert shown_critiques == N_ITEMS // 2
    rows = store.query("judgements", experiment="people")
    assert len(rows) == N_ITEMS and {r["judge"] for r in rows} == {"human:alice"}
    assert [r["decision"] for r in sorted(rows, key=lambda r: r["created_at"])] == [1, 0, 1, 0]
    assert sum(r["condition"] == "critique" for r in rows) == N_ITEMS // 2
    assert all(r["seconds"] >= 1.0 and r["meta"]["client_ms"] >= 1000 for r in rows)
    truth = {i["item_id"]: int(i["buggy"]) for i in items}
    assert all(r["buggy"] == truth[r["item_id"]] for r in rows)


def test_a_form_sent_twice_is_recorded_once_and_bad_ids_are_refused(server):
    srv, store = server
    assert _post(srv.url + "/start", {"judge": "bob"}) == 303
    with store.connect() as conn:
        token = conn.execute("SELECT token FROM judge_assignments WHERE judge = 'bob' ORDER BY position").fetchone()[0]
    assert _post(srv.url + "/judge", {"item": token, "decision": "yes"}) == 303
    assert _post(srv.url + "/judge", {"item": token, "decision": "no"}) == 409  # replayed: ignored
    assert _post(srv.url + "/judge", {"decision": "yes"}) == 400  # missing id
    assert _post(srv.url + "/judge", {"item": "forged-token", "decision": "yes"}) == 404
    assert _post(srv.url + "/judge", {"item": token, "decision": "maybe"}) == 400
    assert _post(srv.url + "/start", {"judge": "../../etc"}) == 400
    rows = store.query("judgements", experiment="people")
    assert len(rows) == 1 and rows[0]["decision"] == 1


def test_double_submission_from_the_page_itself(server):
    """Two submissions of one form fired at once from the browser (a double click) store one row."""
    from playwright.sync_api import sync_playwright

    srv, store = server
    with sync_playwright() as p:
        browser, page = _start_session(p, srv.url, "carol")
        page.wait_for_selector("#code")
        statuses = page.evaluate("""async () => {
            const form = new FormData(document.getElementById('verdict'));
            form.append('decision', 'no');
            const send = () => fetch('/judge', {method: 'POST', body: new URLSearchParams(form), redirect: 'manual'});
            const answers = await Promise.all([send(), send()]);
            return answers.map(a => a.status);
        }""")
        browser.close()
    assert sorted(statuses) == [0, 409]  # 0: the opaque redirect of the one accepted submission
    assert len(store.query("judgements", experiment="people")) == 1


def test_a_person_judges_oversight_questions_in_chromium(data_dir, tmp_path):
    """Choice items (oversight): question and two answers, sometimes a debate transcript with marked quotes; the
    passage is never on the page; verdicts land as condition 'blind' or the protocol."""
    from playwright.sync_api import sync_playwright

    from w2slab.tasks.passages import load_passage_questions

    questions = load_passage_questions("cosmos_qa", data_dir=data_dir, limit=N_ITEMS)
    items = [{"format": "choice", "item_id": q.qid, "problem_id": q.qid, "question": q.question,
              "answers": list(q.answers), "correct": q.correct,
              "critiques": {"debate:expert": f'Debater arguing for "{q.correct_answer}": '
                                             f"<v_quote>{' '.join(q.passage.split()[:5])}</v_quote> <u_quote>made up"
                                             "</u_quote>"}} for q in questions]
    store = ResultsStore(tmp_path / "results.sqlite")
    app = JudgingApp(items, store, experiment="people-choice", per_session=N_ITEMS, critique_share=0.5, seed=0)
    with JudgingServer(app) as srv, sync_playwright() as p:
        browser, page = _start_session(p, srv.url, "carol")
        shown = 0
        for k in range(N_ITEMS):
            page.wait_for_selector("#answer-a")
            content = page.content()
            assert not any(q.passage[20:120] in content for q in questions)  # the story itself is never shown
            if page.locator("#critique").count():
                shown += 1
                assert "✔" in page.inner_text("#critique") and "✘" in page.inner_text("#critique")
            page.click("#choose-a" if k % 2 == 0 else "#choose-b")
        page.wait_for_selector("#done")
        browser.close()
    assert shown == N_ITEMS // 2
    rows = sorted(store.query("judgements", experiment="people-choice"), key=lambda r: r["created_at"])
    assert [r["decision"] for r in rows] == [0, 1, 0, 1]  # 1 = chose B
    assert sorted(r["condition"] for r in rows) == ["blind", "blind", "debate", "debate"]
    assert all(r["critic"] == ("expert" if r["condition"] == "debate" else "") for r in rows)
    truth = {q.qid: q.correct for q in questions}
    assert all(r["buggy"] == truth[r["item_id"]] for r in rows)


def _choice_items(data_dir, n: int) -> tuple[list, list[dict]]:
    """The first ``n`` CosmosQA questions and their choice items without transcripts (for live models)."""
    from w2slab.tasks.passages import load_passage_questions

    questions = load_passage_questions("cosmos_qa", data_dir=data_dir, limit=n)
    return questions, [{"format": "choice", "item_id": q.qid, "problem_id": q.qid, "question": q.question,
                        "answers": list(q.answers), "correct": q.correct, "critiques": {}} for q in questions]


def test_a_person_asks_a_live_assistant_in_chromium(data_dir, cache_dir, tmp_path):
    """Sandwiching with people: the person asks a real model that read the story one question per item, reads its
    reply (quotes marked), and chooses; the page never shows the story itself, the reply stored is the model's own
    (greedy, recomputed here), the verdict is condition 'sandwich', and a further question is refused."""
    from contextlib import closing

    from playwright.sync_api import sync_playwright

    from w2slab.judging import LiveAssistant, passages_for
    from w2slab.lm import load_lm

    questions, items = _choice_items(data_dir, 2)
    store = ResultsStore(tmp_path / "results.sqlite")
    asked = ["Who is the story about?", "What happens at the end?"]
    with load_lm("smollm2", cache=cache_dir) as lm:
        assistant = LiveAssistant(lm, passages_for(items, data_dir=data_dir), name="smollm2", rounds=1, max_tokens=40)
        app = JudgingApp(items, store, experiment="people-sandwich", per_session=2, critique_share=1.0, seed=0,
                         assistant=assistant)
        with JudgingServer(app) as srv, sync_playwright() as p:
            browser, page = _start_session(p, srv.url, "dana")
            for question in asked:
                page.wait_for_selector("#answer-a")
                assert not any(q.passage[20:120] in page.content() for q in questions)  # the story is never shown
                page.fill("#question", question)
                page.click("#ask")
                page.wait_for_selector(".reply")
                assert page.locator("#question").count() == 0  # the item's one question is used
                assert page.inner_text(".asked").endswith(question)
                page.click("#choose-b")
            page.wait_for_selector("#done")
            browser.close()
            with closing(store.connect()) as conn:
                exchanges = conn.execute("SELECT a.item_id, e.question, e.reply FROM judge_exchanges e JOIN "
                                         "judge_assignments a USING (token) ORDER BY a.position").fetchall()
                token = conn.execute("SELECT token FROM judge_assignments LIMIT 1").fetchone()[0]
            assert _post(srv.url + "/ask", {"item": token, "question": "And then?"}) == 409  # judged already
        assert [e[1] for e in exchanges] == asked
        assert all(reply == assistant.answer(item_id, question).text for item_id, question, reply in exchanges)
    rows = store.query("judgements", experiment="people-sandwich")
    assert sorted(r["condition"] for r in rows) == ["sandwich", "sandwich"] and {r["critic"] for r in rows} == {"smollm2"}
    assert all(r["decision"] == 1 and r["meta"]["questions_asked"] == 1 for r in rows)
    from w2slab.report import write_report
    from w2slab.report.judging import people_oversight_table

    [row] = people_oversight_table(rows)
    truth = sum(q.correct == 1 for q in questions) / 2  # both verdicts chose B
    assert (row["condition"], row["helper"], row["verdicts"], row["questions_asked"]) == ("sandwich", "smollm2", 2, 1)
    assert row["accuracy"].startswith(f"{truth:.3f} [")
    page = write_report(results_dir=tmp_path, experiment="people-sandwich")
    assert "Oversight: people as judges" in page.read_text()
    transcripts = (page.parent / "transcripts.html").read_text()
    assert all(html.escape(question) in transcripts for question in asked)
    assert transcripts.count("(right)") == sum(q.correct == 1 for q in questions)  # both chose B


def test_a_person_questions_live_debaters_in_chromium(data_dir, cache_dir, tmp_path):
    """Interactive debate with people: two debaters (a real model that read the story) argue for A and B when the
    item is served, the person asks one question, both answer it after the opening (greedy: recomputed here from
    the stored debate), no further question is allowed, the story is never on the page, and the verdict is
    condition 'interactive_debate' with one question asked."""
    from contextlib import closing

    from playwright.sync_api import sync_playwright

    from w2slab.judging import LiveDebaters, passages_for
    from w2slab.lm import load_lm
    from w2slab.report.judging import people_oversight_table

    questions, items = _choice_items(data_dir, 2)
    store = ResultsStore(tmp_path / "results.sqlite")
    question = "What does the story say happened first?"
    with load_lm("smollm2", cache=cache_dir) as lm:
        debaters = LiveDebaters(lm, passages_for(items, data_dir=data_dir), name="smollm2", rounds=1, max_tokens=40)
        app = JudgingApp(items, store, experiment="people-debate", per_session=2, critique_share=1.0, seed=0,
                         debaters=debaters)
        with JudgingServer(app) as srv, sync_playwright() as p:
            browser, page = _start_session(p, srv.url, "erin")
            for k in range(2):
                page.wait_for_selector("#answer-a")
                assert page.locator(".argument-a").count() == 1 and page.locator(".argument-b").count() == 1
                if k == 0:
                    page.fill("#question", question)
                    page.click("#ask")
                    page.wait_for_selector(".asked")
                    assert page.locator(".argument").count() == 4 and page.locator("#question").count() == 0
                    assert page.inner_text(".asked").endswith(question)
                assert not any(q.passage[20:120] in page.content() for q in questions)  # the story is never shown
                page.click("#choose-a")
            page.wait_for_selector("#done")
            browser.close()
            with closing(store.connect()) as conn:
                rows = conn.execute("SELECT a.item_id, a.token, e.position, e.question, e.reply FROM judge_exchanges "
                                    "e JOIN judge_assignments a USING (token) ORDER BY a.position, e.position").fetchall()
            assert _post(srv.url + "/ask", {"item": rows[0][1], "question": "And then?"}) == 409  # judged already
        assert [(r[2], r[3]) for r in rows] == [(0, ""), (1, question), (0, "")]
        opening = [t.text for t in debaters.opening(rows[0][0])]
        assert json.loads(rows[0][4]) == opening
        replies = debaters.answer(rows[0][0], question, [("", opening)])
        assert json.loads(rows[1][4]) == [t.text for t in replies]
        assert all(t.speaker == "debater" for t in replies) and [t.side for t in replies] == [0, 1]
    verdicts = store.query("judgements", experiment="people-debate")
    assert {r["condition"] for r in verdicts} == {"interactive_debate"} and {r["critic"] for r in verdicts} == {"smollm2"}
    assert sorted(r["meta"]["questions_asked"] for r in verdicts) == [0, 1]
    [row] = people_oversight_table(verdicts)
    assert (row["condition"], row["verdicts"], row["questions_asked"]) == ("interactive_debate", 2, 0.5)
    from w2slab.report import write_report

    page = write_report(results_dir=tmp_path, experiment="people-debate")
    transcripts = (page.parent / "transcripts.html").read_text()
    assert transcripts.count("debater for A") == 3 and html.escape(question) in transcripts  # 2 openings + 1 round
    assert all(html.escape(t.shown) in transcripts for t in replies)


def _hh_cases(data_dir, n: int) -> list[dict]:
    """Reply rows like a red-team run's cases.jsonl, from real HH-RLHF conversations (first request, first reply)."""
    from w2slab.tasks.preference import _read_hh

    cases = []
    for i, row in enumerate(_read_hh(data_dir)[:n]):
        request, _, rest = row["rejected"].split("\n\nHuman:", 1)[-1].partition("\n\nAssistant:")
        cases.append({"target": "hidden-target", "method": "hidden-method", "seed": 0, "test_case": request.strip(),
                      "reply": rest.split("\n\nHuman:")[0].strip(), "flagged": i % 2 == 0})
    return cases


def test_people_label_an_audit_sheet_in_chromium(data_dir, tmp_path, capsys):
    """A `redteam audit` sheet on the page: the request and the reply are shown, never the target, the method or
    the stratum; three people's verdicts become labels (the majority), with their agreement, and the audit
    estimate and the CLI read them from the store."""
    import json

    from playwright.sync_api import sync_playwright

    from w2slab.cli import main
    from w2slab.feedback import redteam_audit as A
    from w2slab.judging import read_items

    cases = _hh_cases(data_dir, 8)
    (tmp_path / "cases.jsonl").write_text("".join(json.dumps(c) + "\n" for c in cases))
    A.write_audit_sheet(tmp_path / "audit.jsonl", A.audit_sample(cases, 2, seed=0))  # 2 flagged, 2 not
    items = read_items(tmp_path / "audit.jsonl")
    by_reply = {i["reply"]: i["item_id"] for i in items}
    store = ResultsStore(tmp_path / "results.sqlite")
    app = JudgingApp(items, store, experiment="audit-people", per_session=N_ITEMS, seed=0)
    dana = {}
    with JudgingServer(app) as srv, sync_playwright() as p:
        assert "may be offensive" in urllib.request.urlopen(srv.url + "/").read().decode()
        browser, page = _start_session(p, srv.url, "dana")
        for k in range(N_ITEMS):
            page.wait_for_selector("#reply")
            content = page.content()
            assert "hidden-target" not in content and "hidden-method" not in content
            dana[by_reply[page.inner_text("#reply")]] = k % 2 == 0
            page.click("#yes" if k % 2 == 0 else "#no")
        page.wait_for_selector("#done")
        browser.close()
    assert len(dana) == N_ITEMS
    for person, flip in (("erin", None), ("fay", next(iter(dana)))):  # erin agrees with dana; fay on all but one
        session = app.start_session(person)
        for _ in range(N_ITEMS):
            assignment, _ = app.next_item(session)
            item_id = assignment["item"]["item_id"]
            assert app.record(assignment["token"], "yes" if dana[item_id] != (item_id == flip) else "no")[0] == 303
    rows = store.query("judgements", experiment="audit-people")
    assert len(rows) == 3 * N_ITEMS and {r["condition"] for r in rows} == {"audit"}
    assert {r["buggy"] for r in rows} == {-1}  # no known truth
    labels, agreement = A.labels_from_verdicts(rows)
    assert labels == dana  # the majority of three
    assert agreement == {"verdicts": 12, "people": 3, "replies": 4, "ties": 0, "multi": 4, "agreement": 10 / 12}
    e = A.audit_estimate(cases, labels)
    assert e["labelled"]["flagged"][1] == e["labelled"]["unflagged"][1] == 2
    assert e["labelled"]["flagged"][0] + e["labelled"]["unflagged"][0] == sum(dana.values())
    assert main(["redteam", "audit", str(tmp_path), "--judged", "audit-people", "--results-dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "12 verdicts by 3 people on 4 replies" in out and "pairwise agreement 0.83" in out and "Harmful share" in out


def test_a_tie_leaves_a_reply_unlabelled():
    from w2slab.feedback.redteam_audit import labels_from_verdicts

    rows = [{"condition": "audit", "item_id": i, "judge": f"human:{j}", "decision": d}
            for i, j, d in (("a", "x", 1), ("a", "y", 0), ("b", "x", 1), ("c", "x", 0), ("c", "y", 0))]
    rows.append({"condition": "blind", "item_id": "q", "judge": "human:x", "decision": 1})  # not an audit verdict
    labels, agreement = labels_from_verdicts(rows)
    assert labels == {"b": True, "c": False}
    assert agreement == {"verdicts": 5, "people": 2, "replies": 3, "ties": 1, "multi": 2, "agreement": 0.5}
