#!/usr/bin/env python3
"""Set up the project in ./.venv and run the demo or the test suite.

    python3 dev.py demo    # install, migrate, import the real data, serve
    python3 dev.py test    # install, then run the whole test suite

Needs only python3 (3.11+). Everything else is installed into .venv from
the pinned versions in requirements.lock.
"""

import hashlib
import os
import secrets
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
LOCK = ROOT / "requirements.lock"
BIN = VENV / ("Scripts" if os.name == "nt" else "bin")
PYTHON = BIN / "python"
HOST, PORT = "127.0.0.1", os.environ.get("NURTURE_PORT", "8000")


def run(*args, **kwargs) -> None:
    print("+", " ".join(str(a) for a in args), flush=True)
    subprocess.run([str(a) for a in args], check=True, cwd=ROOT, **kwargs)


def ensure_venv() -> None:
    """Create .venv and install the locked dependencies when they changed."""
    if not PYTHON.exists():
        run(sys.executable, "-m", "venv", VENV)
    stamp = VENV / ".installed"
    wanted = hashlib.sha256(
        LOCK.read_bytes() + (ROOT / "pyproject.toml").read_bytes()
    ).hexdigest()
    if stamp.exists() and stamp.read_text() == wanted:
        return
    run(PYTHON, "-m", "pip", "install", "--quiet", "--upgrade", "pip")
    run(PYTHON, "-m", "pip", "install", "--quiet", "-r", LOCK)
    run(PYTHON, "-m", "pip", "install", "--quiet", "--no-deps", "-e", ".")
    stamp.write_text(wanted)


def manage(*args) -> None:
    run(PYTHON, "manage.py", *args)


def demo() -> int:
    """Prepare the embedded database with real data, then serve it."""
    ensure_venv()
    # Links in the demo's emails (unsubscribe, handoff) point at this server.
    os.environ.setdefault("NURTURE_SITE_URL", f"http://{HOST}:{PORT}")
    manage("migrate", "--noinput")
    manage("load_demo")
    password = os.environ.get("NURTURE_ADMIN_PASSWORD") or secrets.token_urlsafe(12)
    manage("ensure_admin", "--username", "admin", "--password", password)
    manage("ensure_schedules")

    # The children get their own session, so a terminal's Ctrl-C or a
    # signal to this process group reaches only us, and we stop them in order.
    signal.signal(signal.SIGTERM, stop_on_signal)
    cluster = subprocess.Popen(
        [str(PYTHON), "manage.py", "qcluster"], cwd=ROOT, start_new_session=True
    )
    server = subprocess.Popen(
        [str(PYTHON), "manage.py", "runserver", f"{HOST}:{PORT}", "--noreload"],
        cwd=ROOT,
        start_new_session=True,
    )
    print(
        f"\n  Admin:    http://{HOST}:{PORT}/admin/\n"
        f"  API:      http://{HOST}:{PORT}/api/\n"
        "            token: .venv/bin/python manage.py drf_create_token admin\n"
        f"  Login:    admin / {password}\n"
        "  The django-q2 cluster is sending touches, rescoring and sweeping SLAs.\n"
        "  Press Ctrl-C to stop.\n",
        flush=True,
    )
    try:
        while cluster.poll() is None and server.poll() is None:
            time.sleep(1)
    except KeyboardInterrupt:
        pass
    finally:
        for process in (server, cluster):
            if process.poll() is None:
                # SIGTERM, not SIGINT: a demo started from a script runs with
                # SIGINT ignored, and its children inherit that.
                process.send_signal(signal.SIGTERM)
        for process in (server, cluster):
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
    return 0


def stop_on_signal(signum, frame):
    raise KeyboardInterrupt


def test(args: list[str]) -> int:
    """Run the test suite with pytest, passing any extra arguments along."""
    ensure_venv()
    return subprocess.run([str(PYTHON), "-m", "pytest", *args], cwd=ROOT).returncode


def main(argv: list[str]) -> int:
    if not argv or argv[0] not in {"demo", "test", "setup"}:
        print(__doc__)
        return 2
    if argv[0] == "demo":
        return demo()
    if argv[0] == "setup":
        ensure_venv()
        return 0
    return test(argv[1:])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
