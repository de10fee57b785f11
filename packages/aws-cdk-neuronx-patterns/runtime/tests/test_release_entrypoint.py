import signal
import subprocess
import time

import release_entrypoint


def fake_proc(tmp_path, processes):
    for pid, cmdline in processes.items():
        (tmp_path / str(pid)).mkdir()
        (tmp_path / str(pid) / "cmdline").write_bytes(cmdline)
    (tmp_path / "self").mkdir()
    (tmp_path / "42").mkdir()  # a process that ended between listing and reading
    return tmp_path


def test_only_the_exact_keep_alive_command_matches(tmp_path):
    proc = fake_proc(
        tmp_path,
        {
            1: b"python\0/usr/local/bin/dockerd-entrypoint.py\0python\0compile_job.py\0",
            7: b"tail\0-f\0/dev/null\0",
            8: b"tail\0-f\0/var/log/syslog\0",
            9: b"sh\0-c\0until pkill -x -f 'tail -f /dev/null'; do sleep 1; done\0",
        },
    )
    assert release_entrypoint.keep_alive_pids(proc) == [7]


def test_finds_a_real_keep_alive_process():
    tail = subprocess.Popen(["tail", "-f", "/dev/null"])
    try:
        deadline = time.monotonic() + 5  # Popen may return before the child has exec'd tail
        while tail.pid not in release_entrypoint.keep_alive_pids() and time.monotonic() < deadline:
            time.sleep(0.01)
        assert tail.pid in release_entrypoint.keep_alive_pids()
    finally:
        tail.kill()
        tail.wait()


def test_main_terminates_the_keep_alive_processes(monkeypatch):
    sent = []
    monkeypatch.setattr(release_entrypoint, "keep_alive_pids", iter([[], [7]]).__next__)
    monkeypatch.setattr(release_entrypoint.time, "sleep", lambda seconds: None)
    monkeypatch.setattr(release_entrypoint.os, "kill", lambda pid, sig: sent.append((pid, sig)))

    assert release_entrypoint.main() == 0
    assert sent == [(7, signal.SIGTERM)]


def test_main_gives_up_when_no_keep_alive_process_appears(monkeypatch):
    clock = iter([0.0, 1.0, release_entrypoint.GIVE_UP_SECONDS + 1])
    monkeypatch.setattr(release_entrypoint.time, "monotonic", clock.__next__)
    monkeypatch.setattr(release_entrypoint.time, "sleep", lambda seconds: None)
    monkeypatch.setattr(release_entrypoint, "keep_alive_pids", lambda: [])

    assert release_entrypoint.main() == 1
