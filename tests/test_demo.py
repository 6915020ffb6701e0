"""The demo: real files, download over HTTP (loopback), synthetic fallback."""

from __future__ import annotations

import functools
import hashlib
import http.server
import os
import subprocess
import sys
import threading
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from jobs import demo
from jobs.synthetic import write_synthetic_movielens


def run_demo_command(
    cwd: Path, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    full_env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
    full_env.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "jobs", "-q", "demo", *args],
        cwd=cwd,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=600,
    )


BECAUSE = "  (because you liked "


def section(output: str, heading: str) -> list[str]:
    """Return the numbered lines printed under ``heading``."""
    lines = output.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(heading))
    listed = []
    for line in lines[start + 1 :]:
        if not line.strip() or not line.strip()[0].isdigit():
            break
        listed.append(line.split(". ", 1)[1])
    return listed


@pytest.mark.movielens
def test_demo_on_real_files(tmp_path: Path, movielens_dir: Path) -> None:
    result = run_demo_command(tmp_path, "--movielens-dir", str(movielens_dir))
    assert result.returncode == 0, result.stderr
    picks = section(result.stdout, "Top 10 for 'demo'")
    similar = section(result.stdout, "Movies similar to Jaws (1975)")
    top = [pick.partition(BECAUSE)[0] for pick in picks]
    reasons = [pick.partition(BECAUSE)[2].removesuffix(")") for pick in picks]
    assert len(top) == 10
    assert not set(top) & set(demo.DEMO_FAVORITES)
    # Every pick cites one of the demo user's five favorites.
    assert set(reasons) <= set(demo.DEMO_FAVORITES)
    assert "" not in reasons
    assert len(similar) == 10
    assert "Jaws (1975)" not in similar
    assert "SYNTHETIC" not in result.stdout


def test_demo_without_data_uses_synthetic(tmp_path: Path) -> None:
    env = {"MOVIELENS_DIR": "", "XDG_CACHE_HOME": str(tmp_path / "cache")}
    result = run_demo_command(tmp_path, "--no-download", env=env)
    assert result.returncode == 0, result.stderr
    assert result.stdout.count("*** SYNTHETIC DATA") == 2
    assert len(section(result.stdout, "Top 10 for 'demo'")) == 10
    assert len(section(result.stdout, "Movies similar to Jaws (1975)")) == 10


@pytest.fixture
def served_zip(tmp_path: Path) -> Iterator[tuple[str, str, bytes]]:
    """Serve a small ml-1m-layout zip over HTTP on loopback: (url, md5, bytes)."""
    folder = write_synthetic_movielens(tmp_path / "ml-1m", n_ratings=3_000)
    archive = tmp_path / "site" / "ml-1m.zip"
    archive.parent.mkdir()
    with zipfile.ZipFile(archive, "w") as zipped:
        for path in sorted(folder.iterdir()):
            zipped.write(path, f"ml-1m/{path.name}")
    payload = archive.read_bytes()
    handler = functools.partial(
        http.server.SimpleHTTPRequestHandler, directory=str(archive.parent)
    )
    handler.log_message = lambda *args: None  # type: ignore[attr-defined]
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{server.server_address[1]}/ml-1m.zip"
    yield url, hashlib.md5(payload).hexdigest(), payload
    server.shutdown()
    server.server_close()


def test_fetch_checks_md5(served_zip: tuple[str, str, bytes], tmp_path: Path) -> None:
    url, md5, payload = served_zip
    dest = tmp_path / "cache" / "ml-1m.zip"
    demo.fetch_ml_1m(url, dest, md5)
    assert dest.read_bytes() == payload


def test_fetch_rejects_wrong_md5(
    served_zip: tuple[str, str, bytes], tmp_path: Path
) -> None:
    url, _md5, _payload = served_zip
    dest = tmp_path / "cache" / "ml-1m.zip"
    with pytest.raises(ValueError, match="does not match the expected"):
        demo.fetch_ml_1m(url, dest, "0" * 32)
    assert not dest.exists()
    assert list(dest.parent.iterdir()) == []


def test_locate_downloads_then_uses_cache(
    served_zip: tuple[str, str, bytes],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    url, md5, _payload = served_zip
    monkeypatch.delenv("MOVIELENS_DIR", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setattr(demo, "ML_1M_URL", url)
    monkeypatch.setattr(demo, "ML_1M_MD5", md5)
    first = demo.locate_data(None, True, tmp_path)
    cached = tmp_path / "cache" / "movie-recs" / "ml-1m.zip"
    assert first.path == cached
    assert "downloaded" in first.description
    assert not first.synthetic
    second = demo.locate_data(None, False, tmp_path)
    assert second.path == cached
    assert "downloaded" not in second.description


def test_locate_falls_back_when_unreachable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("MOVIELENS_DIR", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    # Port 9 (discard) on loopback: nothing listens, so the connection is refused.
    monkeypatch.setattr(demo, "ML_1M_URL", "http://127.0.0.1:9/ml-1m.zip")
    source = demo.locate_data(None, True, tmp_path)
    assert source.synthetic
    assert (source.path / "ratings.dat").is_file()
    assert not (tmp_path / "cache" / "movie-recs" / "ml-1m.zip").exists()


def test_demo_rejects_database_with_other_data(tmp_path: Path) -> None:
    env = {"MOVIELENS_DIR": "", "XDG_CACHE_HOME": str(tmp_path / "cache")}
    other = write_synthetic_movielens(tmp_path / "other", n_ratings=3_000, seed=5)
    first = run_demo_command(tmp_path, "--movielens-dir", str(other), env=env)
    assert first.returncode == 0, first.stderr
    second = run_demo_command(tmp_path, "--no-download", env=env)
    assert second.returncode == 3
    assert "holds other data" in second.stderr
    assert "--database-url" in second.stderr
