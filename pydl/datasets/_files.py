"""Where dataset files are found, and how they are fetched when they are not.

Search order for a dataset's files: an explicit path, the cache directory
($PYDL_HOME/datasets/<name>, by default ~/.pydl/datasets/<name>), any system
directories the dataset names (e.g. a Debian package's), and then a download into the
cache directory, each file checked against its known SHA-256 before it is renamed
into place.
"""
import hashlib
import os
import tempfile
import urllib.error
import urllib.request

DOWNLOAD_TIMEOUT_S = 10


class DatasetNotFoundError(FileNotFoundError):
    """A dataset's files are neither on disk nor downloadable (e.g. offline)."""


def cache_dir(name):
    """$PYDL_HOME/datasets/<name>, with PYDL_HOME defaulting to ~/.pydl."""
    home = os.environ.get("PYDL_HOME") or os.path.join(os.path.expanduser("~"), ".pydl")
    return os.path.join(home, "datasets", name)


def find_file(directory, filename):
    """directory/filename, or its gzipped or gunzipped twin, or None."""
    stem = filename[:-3] if filename.endswith(".gz") else filename
    for candidate in (filename, stem, stem + ".gz"):
        full = os.path.join(directory, candidate)
        if os.path.isfile(full):
            return full
    return None


def find_all(directory, filenames):
    """The paths of all filenames in directory, or None unless every one is there."""
    paths = [find_file(directory, f) for f in filenames]
    return paths if all(paths) else None


def sha256_of(path):
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        for chunk in iter(lambda: file.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def download(url, target, sha256):
    """Fetches url to target through a temporary file in target's directory, checking
    its SHA-256 before the rename; raises OSError (URLError, timeout) when offline and
    ValueError on a checksum mismatch."""
    directory = os.path.dirname(target)
    os.makedirs(directory, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=directory, prefix=".download-", suffix=".tmp")
    digest = hashlib.sha256()
    try:
        with os.fdopen(handle, "wb") as out, \
                urllib.request.urlopen(url, timeout=DOWNLOAD_TIMEOUT_S) as response:
            for chunk in iter(lambda: response.read(1 << 20), b""):
                digest.update(chunk)
                out.write(chunk)
        if digest.hexdigest() != sha256:
            raise ValueError(f"{url}: SHA-256 {digest.hexdigest()} does not match the "
                             f"expected {sha256}; the download is damaged or not the "
                             "canonical file")
        os.replace(temporary, target)
    finally:
        if os.path.exists(temporary):
            os.remove(temporary)


def locate(name, files, path=None, system_dirs=(), mirrors=(), hint=""):
    """Paths of the dataset's files (filename -> sha256 in `files`), searching path, the
    cache, system_dirs, then downloading from the first mirror that answers."""
    filenames = list(files)
    if path is not None:
        found = find_all(os.fspath(path), filenames)
        if found is None:
            missing = [f for f in filenames if find_file(os.fspath(path), f) is None]
            raise DatasetNotFoundError(f"{name}: {path} lacks {', '.join(missing)} (a "
                                       f"directory holding {', '.join(filenames)} is expected)")
        return found
    cache = cache_dir(name)
    for directory in (cache, *system_dirs):
        found = find_all(directory, filenames)
        if found is not None:
            return found
    failures = []
    for base in mirrors:
        try:
            for filename in filenames:
                if find_file(cache, filename) is None:
                    download(base + filename, os.path.join(cache, filename), files[filename])
            return find_all(cache, filenames)
        except OSError as error:  # URLError, timeouts, refused connections: try the next
            failures.append(f"{base}: {error}")
    where = " or ".join([cache, *system_dirs])
    raise DatasetNotFoundError(
        f"{name}: files not found and could not be downloaded"
        f"{' (' + '; '.join(failures) + ')' if failures else ''}. Put "
        f"{', '.join(filenames)} in {where} (or pass path= a directory holding them)."
        f"{' ' + hint if hint else ''}")
