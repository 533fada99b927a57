import pytest

from revisor.model.errors import RevisorError
from revisor.model.prompts import FewShot, FineTunedFormat, ZeroShot, fenced, make_strategy, max_new_tokens
from revisor.model.retrieval import BM25Retriever, tokenize
from revisor.model.schema import Example, RevisionTask

POOL = [
    Example("1", "f = open(p)\nf.close()", "use a context manager", "with open(p) as f:\n    pass", "py"),
    Example("2", "int count = 0;", "make it final", "final int count = 0;", "java"),
    Example("3", "for i in range(len(xs)):\n    print(xs[i])", "iterate directly",
            "for x in xs:\n    print(x)", "py"),
]


def test_zero_shot_ends_with_an_open_fence_for_the_language():
    messages = ZeroShot().render(RevisionTask("x = 1", "rename x", "py"))
    assert [m["role"] for m in messages] == ["system", "user", "assistant"]
    assert messages[-1]["content"] == "```python\n"
    assert "rename x" in messages[1]["content"] and "x = 1" in messages[1]["content"]


def test_persona_names_the_language():
    assert ZeroShot(persona=True).render(RevisionTask("x", "c", "go"))[0]["content"].startswith(
        "You are an expert software developer in go.")


def test_few_shot_puts_demonstrations_before_the_query_and_never_the_query_itself(tmp_path):
    retriever = BM25Retriever(POOL, tmp_path)
    task = POOL[0].task
    messages = FewShot(retriever=retriever, k=2).render(task)
    assert [m["role"] for m in messages] == ["system", "user", "assistant", "user", "assistant",
                                            "user", "assistant"]
    demos = "".join(m["content"] for m in messages[1:5])
    assert "use a context manager" not in demos
    assert messages[5]["content"].endswith("Review comment: use a context manager")


def test_retrieval_ranks_by_code_and_comment_and_caches_its_index(tmp_path):
    retriever = BM25Retriever(POOL, tmp_path)
    best = retriever.top_k(RevisionTask("for i in range(len(items)): print(items[i])", "iterate"), 1)
    assert best[0].id == "3"
    assert len(list(tmp_path.glob("bm25-*/params.index.json"))) == 1
    assert BM25Retriever(POOL, tmp_path).top_k(RevisionTask("final int", "final"), 1)[0].id == "2"


def test_tokenize_splits_identifiers():
    assert tokenize("getHTTPResponse snake_case") == ["get", "http", "response", "snake", "case"]


def test_fine_tuned_training_chat_is_the_inference_prompt_plus_target():
    fmt = FineTunedFormat()
    prompt, target = fmt.training_chat(POOL[1])
    assert prompt == fmt.render(POOL[1].task)
    assert target == "final int count = 0;\n```"


def test_fine_tuned_with_retrieval_shows_other_pairs_in_its_own_template_before_the_query(tmp_path):
    plain = FineTunedFormat()
    retrieving = make_strategy("fine-tuned+retrieval", retriever=BM25Retriever(POOL, tmp_path), k=2)
    task = POOL[0].task
    messages = retrieving.render(task)
    assert [m["role"] for m in messages] == ["user", "assistant"] * 3
    assert messages[-2:] == plain.render(task)  # the query as the adapter saw it in training
    demos = messages[:4]
    assert "use a context manager" not in "".join(m["content"] for m in demos)  # never the query
    for demo in demos[::2]:
        shown = next(e for e in POOL if e.comment in demo["content"])
        assert demo == plain.render(shown.task)[0]
    assert demos[1]["content"].startswith("```") and demos[1]["content"].endswith("```")
    assert retrieving.training_chat(POOL[0]) == (messages, POOL[0].code_after + "\n```")
    with pytest.raises(RevisorError, match="needs a retrieval pool"):
        make_strategy("fine-tuned+retrieval")


def test_fence_is_longer_than_any_backtick_run():
    assert fenced("a ```` b", "md").startswith("`````md\n")


def test_new_tokens_grow_with_input_and_are_capped():
    assert max_new_tokens("x" * 100) < max_new_tokens("x" * 1000) <= 1024
    assert max_new_tokens("x" * 100_000) == 1024


def test_the_fine_tuned_format_shows_the_commented_lines_inside_their_hunk_as_training_did():
    from revisor.model.prompts import FineTunedFormat
    from revisor.model.schema import RevisionTask

    task = RevisionTask("    x = 1\n", "rename x", "python", before="a\nb\nc\nd\n", after="e\nf\ng\nh\n")
    prompt = FineTunedFormat().render(task)[0]["content"]
    assert "```python\nb\nc\nd\n    x = 1\ne\nf\ng\n```" in prompt and "just before" not in prompt
    alone = FineTunedFormat().render(RevisionTask("x = 1\n", "rename x", "python"))[0]["content"]
    assert "```python\nx = 1\n```" in alone
