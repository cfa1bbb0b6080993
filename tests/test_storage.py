"""The storage layer against a local folder and a real S3 endpoint (moto's server on loopback)."""

import pytest

from ray_lth.storage import location


@pytest.fixture(params=["local", "s3"])
def root(request, tmp_path):
    if request.param == "local":
        return location(tmp_path / "store")
    return location(request.getfixturevalue("s3_server")("storage-layer"))


def test_files_round_trip_and_list_by_name(root):
    (root / "exp" / "a.txt").write_text("first")
    (root / "exp" / "a.txt").write_text("second")  # replaced whole
    (root / "exp" / "sub" / "b.bin").write_bytes(b"\x00\x01")
    assert (root / "exp" / "a.txt").read_text() == "second"
    assert (root / "exp").list() == ["a.txt", "sub"]
    assert (root / "exp" / "sub" / "b.bin").read_bytes() == b"\x00\x01"
    assert not (root / "exp" / "missing").exists()
    assert (root / "nowhere").list() == []


def test_a_local_folder_uploads_and_downloads_with_its_subfolders(root, tmp_path):
    source = tmp_path / "source"
    (source / "deep").mkdir(parents=True)
    (source / "top.csv").write_text("x,y\n")
    (source / "deep" / "events.bin").write_bytes(b"123")
    (root / "report").upload(source)
    with (root / "report").as_local_dir() as copy:
        assert sorted(str(p.relative_to(copy)) for p in copy.rglob("*")) == ["deep", "deep/events.bin", "top.csv"]
        assert (copy / "deep" / "events.bin").read_bytes() == b"123"


def test_an_s3_uri_is_never_turned_into_a_local_folder(s3_server, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    root = location(s3_server("no-local-copy"))
    (root / "exp" / "results.csv").write_text("a\n")
    assert not root.is_local and root.local_path is None
    assert str(root / "exp") == "s3://no-local-copy/exp"
    assert list(tmp_path.iterdir()) == []  # nothing landed in a local folder named s3: or no-local-copy/


def test_a_local_write_leaves_no_temporary_file(tmp_path):
    target = location(tmp_path) / "results.csv"
    target.write_text("a,b\n")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["results.csv"]


def test_a_storage_uri_pyarrow_cannot_open_is_named():
    with pytest.raises(ValueError, match="nosuchscheme://bucket"):
        location("nosuchscheme://bucket/x")
