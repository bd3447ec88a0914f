"""The web app's files as they are served: which files, and with which Content-Type.

One definition for ``scripts/publish_web.py`` (what S3 serves through CloudFront in AWS) and
for the local server (``make run``), so the two cannot differ.
"""

from __future__ import annotations

import mimetypes
from pathlib import Path, PurePath

# Explicit, so that the result does not depend on the machine's mime.types.
CONTENT_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".mjs": "text/javascript; charset=utf-8",
    ".json": "application/json",
    ".map": "application/json",
    ".webmanifest": "application/manifest+json",
    ".txt": "text/plain; charset=utf-8",
    ".svg": "image/svg+xml",
    ".png": "image/png",
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg",
    ".gif": "image/gif",
    ".webp": "image/webp",
    ".ico": "image/x-icon",
    ".woff2": "font/woff2",
    ".woff": "font/woff",
}


def published(relative: PurePath) -> bool:
    """Whether a path inside web/ is part of the app: dotfiles and dot-folders are not."""
    return not any(part.startswith(".") for part in relative.parts)


def content_type(path: Path | str) -> str:
    """The Content-Type a file is served with."""
    suffix = Path(path).suffix.lower()
    if suffix in CONTENT_TYPES:
        return CONTENT_TYPES[suffix]
    guessed, _ = mimetypes.guess_type(str(path))
    if guessed and guessed.startswith("text/"):
        return f"{guessed}; charset=utf-8"
    return guessed or "application/octet-stream"


def web_files(web_dir: Path) -> dict[str, Path]:
    """The files to publish by bucket key (a path relative to ``web_dir``), dotfiles and dot-folders left out."""
    files: dict[str, Path] = {}
    for path in sorted(web_dir.rglob("*")):
        relative = path.relative_to(web_dir)
        if path.is_file() and published(relative):
            files[relative.as_posix()] = path
    return files
