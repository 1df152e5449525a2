#!/usr/bin/env python3
"""The local stack: moto's server mode (DynamoDB, Secrets Manager, SQS) and the Microsoft 365
simulator, each on a free 127.0.0.1 port, plus the default resources of infra/template.yaml.

usage: stack.py up | down | status

up      starts both servers (pid files in .local/run/, logs in .local/logs/), waits until both
        answer HTTP, provisions the template's table, queues and secret under the prefix
        `local` (target/debug/stack-provision, so the template is read by the same code as the
        tests) and writes .local/stack.env. Does nothing if the stack is already up.
down    stops what `up` started (only the pids in its pid files), removes stack.env; safe to
        run twice.
status  exit status 0 if both servers run and answer.

Environment: CARGO_TARGET_DIR (where the binaries are), M365_SIM_BIN (simulator binary),
SIM_SEED (simulator seed, default 1).
"""

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
LOCAL = ROOT / ".local"
RUN = LOCAL / "run"
LOGS = LOCAL / "logs"
ENV_FILE = LOCAL / "stack.env"
VENV = LOCAL / "venv"
_target = Path(os.environ.get("CARGO_TARGET_DIR") or "target")
TARGET = _target if _target.is_absolute() else ROOT / _target
REGION = "us-east-1"
STACK_PREFIX = "local"

# Service name -> a string its command line must contain (so a reused pid is never signalled).
SERVICES = {"moto": "moto_server", "m365-sim": "m365-sim"}


def log(message):
    print(f"stack: {message}", file=sys.stderr, flush=True)


def pid_file(name):
    return RUN / f"{name}.pid"


def running_pid(name):
    """The pid in the service's pid file if that process still runs the service."""
    try:
        pid = int(pid_file(name).read_text().strip())
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, ValueError, IndexError):
        return None
    if state == "Z" or SERVICES[name] not in cmdline:
        return None
    return pid


def read_env():
    try:
        lines = ENV_FILE.read_text().splitlines()
    except OSError:
        return {}
    return dict(line.split("=", 1) for line in lines if "=" in line and not line.startswith("#"))


def answers(url, timeout=2.0):
    """True if something serves HTTP at url (any status, even 404)."""
    try:
        with urllib.request.urlopen(url, timeout=timeout):
            return True
    except urllib.error.HTTPError:
        return True
    except (OSError, ValueError):
        return False


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def spawn(name, argv):
    LOGS.mkdir(parents=True, exist_ok=True)
    RUN.mkdir(parents=True, exist_ok=True)
    log_path = LOGS / f"{name}.log"
    with open(log_path, "ab") as out:
        # A session of its own: the stack outlives `make stack-up` and ignores the terminal's ^C.
        proc = subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, cwd=ROOT, start_new_session=True
        )
    pid_file(name).write_text(f"{proc.pid}\n")
    return proc, log_path


def wait_until(what, check, proc, log_path, timeout=60.0):
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited with status {proc.returncode}; see {log_path}:\n{tail(log_path)}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what} did not come up within {timeout:.0f} s; see {log_path}:\n{tail(log_path)}")
        time.sleep(0.1)


def tail(path, lines=20):
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def start_moto():
    moto = VENV / "bin" / "moto_server"
    if not moto.exists():
        raise RuntimeError(f"{moto} is missing: run `make setup`")
    last_error = None
    for _ in range(3):  # another process may take the free port first
        port = free_port()
        proc, log_path = spawn("moto", [str(moto), "-H", "127.0.0.1", "-p", str(port)])
        url = f"http://127.0.0.1:{port}"
        try:
            wait_until("moto_server", lambda: answers(f"{url}/moto-api/"), proc, log_path)
            return url
        except RuntimeError as e:
            last_error = e
            stop("moto")
    raise last_error


def start_sim():
    sim = Path(os.environ.get("M365_SIM_BIN") or TARGET / "debug" / "m365-sim")
    if not sim.exists():
        raise RuntimeError(f"{sim} is missing: build it with `cargo build -p m365-sim`")
    port_file = RUN / "m365-sim.port"
    port_file.unlink(missing_ok=True)
    seed = os.environ.get("SIM_SEED", "1")
    argv = [str(sim), "--host", "127.0.0.1", "--port", "0", "--port-file", str(port_file), "--seed", seed]
    proc, log_path = spawn("m365-sim", argv)

    def port():
        try:
            text = port_file.read_text().strip()
            return int(text) if text else None
        except (OSError, ValueError):
            return None

    url = f"http://127.0.0.1:{wait_until('m365-sim (port file)', port, proc, log_path)}"
    wait_until("m365-sim", lambda: answers(url), proc, log_path)
    return url


def provision(env):
    binary = TARGET / "debug" / "stack-provision"
    if not binary.exists():
        raise RuntimeError(f"{binary} is missing: build it with `cargo build -p e2e --bins`")
    result = subprocess.run(
        [str(binary), "--prefix", STACK_PREFIX],
        env={**os.environ, **env},
        cwd=ROOT,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
    )
    if result.returncode != 0:
        raise RuntimeError(f"provisioning failed:\n{result.stderr}{result.stdout}")
    return dict(line.split("=", 1) for line in result.stdout.splitlines() if "=" in line)


def is_up():
    env = read_env()
    if not all(running_pid(name) for name in SERVICES) or "AWS_ENDPOINT_URL" not in env:
        return False
    return answers(f"{env['AWS_ENDPOINT_URL']}/moto-api/") and answers(env.get("M365_SIM_URL", ""))


def up():
    if is_up():
        log(f"already up ({ENV_FILE.relative_to(ROOT)})")
        return 0
    down(quiet=True)  # clear whatever a crashed stack left
    try:
        endpoint = start_moto()
        sim_url = start_sim()
        env = {
            "AWS_ENDPOINT_URL": endpoint,
            "AWS_REGION": REGION,
            "AWS_DEFAULT_REGION": REGION,
            "AWS_ACCESS_KEY_ID": "test",
            "AWS_SECRET_ACCESS_KEY": "test",
            "M365_SIM_URL": sim_url,
            "GRAPH_BASE_URL": f"{sim_url}/v1.0",
            "LOGIN_BASE_URL": sim_url,
        }
        env.update(provision(env))
    except (RuntimeError, OSError) as e:
        log(f"failed: {e}")
        down(quiet=True)
        return 1
    tmp = ENV_FILE.with_suffix(".tmp")
    lines = ["# Written by `make stack-up` (infra/local/stack.py); removed by `make stack-down`."]
    lines += [f"{key}={value}" for key, value in env.items()]
    tmp.write_text("\n".join(lines) + "\n")
    tmp.replace(ENV_FILE)
    log(f"up: AWS emulator {endpoint}, M365 simulator {sim_url}, table {env.get('TABLE_NAME')}")
    log(f"variables in {ENV_FILE.relative_to(ROOT)}; logs in {LOGS.relative_to(ROOT)}/")
    return 0


def stop(name):
    """Stops the service named in its pid file, if that process is still the service."""
    pid = running_pid(name)
    if pid is not None:
        try:
            # Started with a session of its own: signal its process group (pgid == pid).
            if os.getpgid(pid) == pid:
                os.killpg(pid, signal.SIGTERM)
            else:
                os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        deadline = time.monotonic() + 5
        while running_pid(name) is not None and time.monotonic() < deadline:
            time.sleep(0.05)
        if running_pid(name) is not None:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
    pid_file(name).unlink(missing_ok=True)
    return pid


def down(quiet=False):
    stopped = [name for name in SERVICES if stop(name) is not None]
    (RUN / "m365-sim.port").unlink(missing_ok=True)
    ENV_FILE.unlink(missing_ok=True)
    if not quiet:
        log(f"stopped {', '.join(stopped)}" if stopped else "nothing was running")
    return 0


def status():
    for name in SERVICES:
        pid = running_pid(name)
        print(f"{name}: {'running, pid ' + str(pid) if pid else 'not running'}")
    up_now = is_up()
    print("stack: up" if up_now else "stack: down")
    return 0 if up_now else 1


def main(argv):
    commands = {"up": up, "down": down, "status": status}
    if len(argv) != 2 or argv[1] not in commands:
        print(__doc__, file=sys.stderr)
        return 2
    return commands[argv[1]]()


if __name__ == "__main__":
    sys.exit(main(sys.argv))
