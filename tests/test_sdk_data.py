"""Data readers: tables, CoNLL and seq.in/seq.out files, errors with file and line, and the real data sets."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mtbranch.errors import MtbranchError
from mtbranch.sdk.data import (
    ConllSpec,
    DataError,
    TableSpec,
    TextExample,
    load_table_data,
    load_token_data,
    read_conll,
    read_seq_files,
    read_table,
)

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
needs_data = pytest.mark.skipif(not DATA.is_dir(), reason="../shared/data is not present")


def test_tsv_with_header_by_name(tmp_path: Path) -> None:
    p = tmp_path / "t.tsv"
    p.write_text("sentence\tlabel\nit 's good \t1\nbad\t0\n")
    rows = read_table(p, TableSpec(text="sentence", label="label"))
    assert rows == [TextExample("it 's good", None, "1"), TextExample("bad", None, "0")]


def test_pairs_with_scores_no_header_quote_none(tmp_path: Path) -> None:
    p = tmp_path / "sts.csv"  # STS-B: tab-separated despite .csv, stray quotes, extra trailing columns
    p.write_text('g\tf\t2012\t0001\t4.5\tA "quoted" man\tA man\n'
                 'g\tf\t2012\t0002\t0.0\tx\ty\tsrc1\tsrc2\n')
    rows = read_table(p, TableSpec(text=5, pair=6, label=4, label_kind="score", header=False, quote_none=True))
    assert rows[0] == TextExample('A "quoted" man', "A man", 4.5)
    assert rows[1].label == 0.0 and rows[1].pair == "y"


def test_csv_quoted_and_jsonl(tmp_path: Path) -> None:
    c = tmp_path / "b.csv"
    c.write_text('text,category\n"hello, world",greet\nbye,leave\n')
    assert [r.text for r in read_table(c, TableSpec(text="text", label="category"))] == ["hello, world", "bye"]
    j = tmp_path / "d.jsonl"
    j.write_text("\n".join(json.dumps(o) for o in [{"a": "x", "b": "y", "s": 1.5}, {"a": "z", "b": "w", "s": 2}]))
    rows = read_table(j, TableSpec(text="a", pair="b", label="s", label_kind="score"))
    assert rows[1] == TextExample("z", "w", 2.0)


@pytest.mark.parametrize(("content", "spec", "line", "words"), [
    ("sentence\tlabel\nok\t1\nno label here\n", TableSpec(text="sentence", label="label"), 3, "column"),
    ("s\tscore\na\t0.5\nb\tfive\n", TableSpec(text=0, label=1, label_kind="score"), 3, "not a number"),
    ("s\tlabel\na\t1\n", TableSpec(text="text", label="label"), 1, "no column named 'text'"),
    ("a\t \n", TableSpec(header=False), 1, "empty label"),
])
def test_table_errors_name_file_and_line(tmp_path: Path, content: str, spec: TableSpec, line: int,
                                         words: str) -> None:
    p = tmp_path / "bad.tsv"
    p.write_text(content)
    with pytest.raises(DataError) as ei:
        read_table(p, spec)
    assert isinstance(ei.value, MtbranchError)
    assert ei.value.line == line and ei.value.path == str(p)
    assert words in str(ei.value) and f"line {line}" in str(ei.value)


def test_jsonl_error_line(tmp_path: Path) -> None:
    p = tmp_path / "d.jsonl"
    p.write_text('{"text": "a", "label": "x"}\n\n{"text": "b", "label": \n')
    with pytest.raises(DataError) as ei:
        read_table(p, TableSpec(text="text", label="label"))
    assert ei.value.line == 3


def test_conll_skips_docstart_and_reads_last_column(tmp_path: Path) -> None:
    p = tmp_path / "c.txt"
    p.write_text("-DOCSTART- -X- -X- O\n\nEU NNP B-NP B-ORG\nrejects VBZ B-VP O\n\n\nPeter NNP B-NP B-PER\n")
    s = read_conll(p)
    assert [e.tokens for e in s] == [["EU", "rejects"], ["Peter"]]
    assert [e.tags for e in s] == [["B-ORG", "O"], ["B-PER"]]
    assert read_conll(p, ConllSpec(tag_col=2))[0].tags == ["B-NP", "B-VP"]


def test_conll_bad_tag_line(tmp_path: Path) -> None:
    p = tmp_path / "c.txt"
    p.write_text("a X X O\nb X X PER\n")
    with pytest.raises(DataError) as ei:
        read_conll(p)
    assert ei.value.line == 2 and "BIO" in str(ei.value)


def test_seq_files(tmp_path: Path) -> None:
    (tmp_path / "seq.in").write_text("play some jazz \nbook a table\n")
    (tmp_path / "seq.out").write_text("O O B-genre\nO O O\n")
    d = load_token_data(tmp_path)
    assert d.examples[0].tokens == ["play", "some", "jazz"] and d.examples[0].tags[2] == "B-genre"
    assert len(d.sources) == 2 and all(len(s["sha256"]) == 64 for s in d.sources)
    (tmp_path / "seq.out").write_text("O O B-genre\nO O\n")
    with pytest.raises(DataError) as ei:
        read_seq_files(tmp_path / "seq.in", tmp_path / "seq.out")
    assert ei.value.line == 2


def test_missing_file_is_user_error(tmp_path: Path) -> None:
    with pytest.raises(MtbranchError, match="does not exist"):
        read_table(tmp_path / "nope.tsv")


@needs_data
def test_real_sst2_stsb_conll() -> None:
    sst = load_table_data(DATA / "SST-2" / "dev.tsv", TableSpec(text="sentence", label="label"))
    assert len(sst.examples) == 872 and {e.label for e in sst.examples} == {"0", "1"}
    assert sst.sources[0]["sha256"].startswith("54a9c12c")
    sts = read_table(DATA / "STS-B" / "sts-dev.csv",
                     TableSpec(text=5, pair=6, label=4, label_kind="score", header=False, quote_none=True))
    assert len(sts) == 1500 and all(0.0 <= e.label <= 5.0 for e in sts)  # type: ignore[operator]
    conll = read_conll(DATA / "conll2003" / "valid.txt")
    assert len(conll) == 3250 and sum(len(e.tokens) for e in conll) == 51362


def test_classification_reads_the_seq_in_label_folder(tmp_path: Path) -> None:
    """SNIPS/ATIS intents: train/seq.in + train/label, as token classification reads seq.in + seq.out."""
    from mtbranch.sdk.data import load_task_data

    (tmp_path / "seq.in").write_text("play  some jazz\nbook a table for two\n\n")
    (tmp_path / "label").write_text("PlayMusic\nBookRestaurant\n\n")
    (tmp_path / "seq.out").write_text("O O B-genre\nO O O O O\n\n")
    d = load_task_data("classification", tmp_path)
    assert [(e.text, e.label) for e in d.examples] == [("play some jazz", "PlayMusic"),
                                                        ("book a table for two", "BookRestaurant")]
    assert [Path(s["path"]).name for s in d.sources] == ["seq.in", "label"]
    (tmp_path / "label").write_text("PlayMusic\n")
    with pytest.raises(DataError, match=r"3 lines in seq\.in but 1 in label"):
        load_task_data("classification", tmp_path)


@pytest.mark.parametrize(("task", "names"), [("classification", "seq.in and label"),
                                             ("token_classification", "seq.in and seq.out")])
def test_a_folder_without_the_layout_names_the_files_it_looked_for(tmp_path: Path, task: str, names: str) -> None:
    from mtbranch.sdk.data import load_task_data

    (tmp_path / "seq.in").write_text("play some jazz\n")
    (tmp_path / "notes.txt").write_text("x\n")
    with pytest.raises(DataError) as ei:
        load_task_data(task, tmp_path)
    msg = str(ei.value)
    assert names in msg and "missing" in msg and "notes.txt" in msg and "does not exist" not in msg
    assert ei.value.path == str(tmp_path) and ei.value.hint


def test_a_folder_where_a_file_is_needed_is_not_called_missing(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="a folder, not a data file"):
        read_conll(tmp_path)


def test_labels_joined_by_hash_are_one_class_each_with_a_warning(tmp_path: Path,
                                                                 caplog: pytest.LogCaptureFixture) -> None:
    """Multi-intent utterances (labels joined by '#', as in MixSNIPS/MixATIS): documented, and said at read time."""
    from mtbranch.sdk.data import load_task_data

    (tmp_path / "seq.in").write_text("play jazz and book a table\nplay jazz\n")
    (tmp_path / "label").write_text("PlayMusic#BookRestaurant\nPlayMusic\n")
    with caplog.at_level("WARNING", logger="mtbranch"):
        d = load_task_data("classification", tmp_path)
    assert [e.label for e in d.examples] == ["PlayMusic#BookRestaurant", "PlayMusic"]
    assert "1 label(s) join several intents with '#'" in caplog.text and "docs/cli.md" in caplog.text
