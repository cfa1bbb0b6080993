"""Where an experiment's files live: a local folder, NFS, or an object store (``s3://``, ``gs://``,
any URI ``pyarrow.fs`` takes, options included: ``s3://bucket/x?endpoint_override=host:port&scheme=http``).

Every file the project writes goes through a ``Location`` (a ``pyarrow.fs`` filesystem and a path
in it), the layer Ray Tune's own ``storage_path`` uses, so a trial's durable copy, results.csv, the
report and the TensorBoard files land where Ray's checkpoints land. A local path is never made out
of an object store's path: that would write into a local folder named ``bucket/…`` and lose it with
the node.

Writes are atomic where the filesystem allows: locally write-then-rename; on an object store a
single PUT (an object is visible only once its upload completes).
"""

import os
import shutil
import tempfile
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, List, Optional, Union

import pyarrow.fs as pafs


@dataclass(frozen=True)
class Location:
    fs: pafs.FileSystem
    path: str  # a path inside ``fs``, without a trailing slash
    scheme: str = ""  # "" for local paths, else the URI's scheme (for messages)

    def __truediv__(self, name: str) -> "Location":
        return Location(self.fs, f"{self.path}/{name}" if self.path else str(name), self.scheme)

    def __str__(self) -> str:
        return f"{self.scheme}://{self.path}" if self.scheme else self.path

    @property
    def name(self) -> str:
        return self.path.rstrip("/").rsplit("/", 1)[-1]

    @property
    def parent(self) -> "Location":
        return Location(self.fs, self.path.rstrip("/").rsplit("/", 1)[0], self.scheme)

    @property
    def is_local(self) -> bool:
        return isinstance(self.fs, pafs.LocalFileSystem)

    @property
    def local_path(self) -> Optional[Path]:
        """The path on this machine, for a local location; None on an object store."""
        return Path(self.path) if self.is_local else None

    def exists(self) -> bool:
        return self.fs.get_file_info(self.path).type != pafs.FileType.NotFound

    def is_dir(self) -> bool:
        return self.fs.get_file_info(self.path).type == pafs.FileType.Directory

    def makedirs(self) -> "Location":
        self.fs.create_dir(self.path, recursive=True)
        return self

    def list(self) -> List[str]:
        """Names of the entries directly inside this folder (empty when it does not exist)."""
        if not self.exists():
            return []
        infos = self.fs.get_file_info(pafs.FileSelector(self.path, recursive=False))
        return sorted(info.base_name for info in infos)

    def read_bytes(self) -> bytes:
        with self.fs.open_input_stream(self.path) as f:
            return f.read()

    def read_text(self) -> str:
        return self.read_bytes().decode()

    def write_bytes(self, data: bytes) -> None:
        """Atomically: a reader sees the old object or the new one, never a part."""
        self.parent.makedirs()
        if self.is_local:
            tmp = f"{self.path}.tmp{os.getpid()}"
            with self.fs.open_output_stream(tmp) as f:
                f.write(data)
            self.fs.move(tmp, self.path)  # a rename on one filesystem
        else:
            with self.fs.open_output_stream(self.path) as f:  # one PUT, visible once complete
                f.write(data)

    def write_text(self, text: str) -> None:
        self.write_bytes(text.encode())

    def delete(self) -> None:
        info = self.fs.get_file_info(self.path)
        if info.type == pafs.FileType.Directory:
            self.fs.delete_dir(self.path)
        elif info.type != pafs.FileType.NotFound:
            self.fs.delete_file(self.path)

    def upload(self, local_dir: Union[str, Path]) -> None:
        """Copy a local folder's contents into this location (files of the same name replaced)."""
        self.makedirs()
        if self.is_local and Path(local_dir).resolve() == Path(self.path).resolve():
            return
        pafs.copy_files(str(Path(local_dir).resolve()), self.path, source_filesystem=pafs.LocalFileSystem(),
                        destination_filesystem=self.fs)

    def download(self, local_dir: Union[str, Path]) -> Path:
        """Copy this folder's contents into a local folder; returns it."""
        local_dir = Path(local_dir)
        local_dir.mkdir(parents=True, exist_ok=True)
        pafs.copy_files(self.path, str(local_dir.resolve()), source_filesystem=self.fs,
                        destination_filesystem=pafs.LocalFileSystem())
        return local_dir

    @contextmanager
    def as_local_dir(self) -> Iterator[Path]:
        """This folder as a local folder for the duration of the block: itself when local, else a
        downloaded copy (read-only use: changes are not written back)."""
        if self.is_local:
            yield Path(self.path)
            return
        tmp = tempfile.mkdtemp(prefix="ray_lth_download_")
        try:
            yield self.download(tmp)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)


def location(uri: Union[str, Path, "Location"]) -> Location:
    """A Location from a local path (relative ones resolved here) or a URI pyarrow.fs understands."""
    if isinstance(uri, Location):
        return uri
    uri = str(uri)
    if "://" not in uri:
        return Location(pafs.LocalFileSystem(), str(Path(uri).expanduser().resolve()))
    scheme = uri.split("://", 1)[0]
    if scheme == "file":
        return location(uri[len("file://"):])
    try:
        fs, path = pafs.FileSystem.from_uri(uri)
    except (ValueError, OSError) as error:  # pyarrow's ArrowInvalid is a ValueError
        raise ValueError(f"storage {uri!r}: not a path or a storage URI pyarrow.fs can open ({error})") from None
    return Location(fs, path.rstrip("/"), scheme)


def on_filesystem(filesystem: pafs.FileSystem, path: str) -> Location:
    """A Location from a pyarrow filesystem and a path in it (what Ray's StorageContext holds)."""
    kind = filesystem.type_name
    return Location(filesystem, path.rstrip("/"), "" if kind == "local" else {"gcs": "gs"}.get(kind, kind))


def is_file(uri: Union[str, Path]) -> bool:
    """Whether ``uri`` (a local path or a storage URI, options included) names a file."""
    source = location(uri)
    return source.fs.get_file_info(source.path).type == pafs.FileType.File


def is_uri(value: Union[str, Path]) -> bool:
    return "://" in str(value) and not str(value).startswith("file://")


def storage_path_for_ray(uri: Union[str, Path]) -> str:
    """What to pass as Ray's ``storage_path``: the URI as given (options included), or an absolute path."""
    return str(uri) if is_uri(uri) else str(location(uri))


def join_uri(uri: Union[str, Path], *names: str) -> str:
    """The URI (or local path) of ``names`` inside ``uri``, its options kept:
    ``join_uri("s3://b?endpoint_override=h:1", "x", "y.pt") == "s3://b/x/y.pt?endpoint_override=h:1"``."""
    if not is_uri(uri):
        return str(Path(str(location(uri))).joinpath(*names))
    base, _, options = str(uri).partition("?")
    joined = "/".join([base.rstrip("/"), *names])
    return f"{joined}?{options}" if options else joined
