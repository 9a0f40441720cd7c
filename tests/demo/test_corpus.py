"""demo/corpus.py: the standard library's Python files as a corpus, sorted, without tests, packages and data, split
into train and validation by file name; an empty corpus is a clear error; the tokenizer trains deterministically."""

from __future__ import annotations

from pathlib import Path

import pytest

import workbench as wb
from workbench.demo import corpus


def _tree(root: Path, rels: list[str]) -> None:
    for rel in rels:
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(f"# {rel}\nx = 1\n")


def test_corpus_files_are_sorted_and_leave_out_tests_packages_and_data(tmp_path):
    kept = ["a.py", "b/__init__.py", "b/c.py", "email/mime/text.py", "zz.py"]
    left_out = [
        "test/test_a.py",
        "b/tests/t.py",
        "idlelib/idle_test/x.py",
        "site-packages/pkg/m.py",
        "dist-packages/m.py",
        "__pycache__/a.py",
        "pydoc_data/topics.py",
        "encodings/cp1252.py",
        "b/notes.txt",
    ]
    _tree(tmp_path, kept + left_out)
    files = corpus.stdlib_files(tmp_path)
    assert [f.relative_to(tmp_path.resolve()).as_posix() for f in files] == sorted(kept)
    train, val = corpus.split(files, tmp_path)
    assert sorted(train + val) == sorted(files) and set(train).isdisjoint(val)
    # membership depends on the file's relative name only, not on which other files exist
    for f in files:
        rel = f.relative_to(tmp_path.resolve())
        assert corpus.is_val(f, tmp_path) == corpus.is_val(rel, tmp_path) == corpus.is_val(rel, "/elsewhere")
    assert corpus.split(files[:2], tmp_path) == tuple([f for f in part if f in files[:2]] for part in (train, val))


def test_empty_corpus_is_a_clear_error(tmp_path):
    with pytest.raises(wb.DataError, match=r"no Python source files under .*pass root="):
        corpus.stdlib_files(tmp_path)


def test_this_machines_stdlib_split_is_by_file():
    files = corpus.stdlib_files()
    root = corpus.stdlib_root().resolve()
    rels = [f.relative_to(root).as_posix() for f in files]
    assert rels == sorted(rels) and len(files) > 100
    assert not any(set(r.split("/")[:-1]) & corpus.EXCLUDED_DIRS for r in rels)
    train, val = corpus.split(files)
    assert 0 < len(val) < len(train) / 5
    assert val == [f for f in files if corpus.is_val(f)]


def test_tokenizer_training_is_deterministic_and_round_trips():
    pytest.importorskip("tokenizers")
    files = corpus.split(corpus.stdlib_files())[0][:20]
    texts = [corpus.read_text(f) for f in files]
    a = corpus.train_tokenizer(texts, vocab_size=400)
    b = corpus.train_tokenizer(texts, vocab_size=400)
    assert a.to_str() == b.to_str()
    assert a.get_vocab_size() == 400 and a.token_to_id(corpus.EOS) == 0
    sample = "def f(x):\n    return x ** 2  # ü\n"
    assert a.decode(a.encode(sample).ids) == sample
