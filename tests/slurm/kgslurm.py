"""A private single-node Slurm cluster for tests: munged, slurmctld and slurmd
run in the foreground as children of this process, with every file (config,
state, spool, logs, munge key and socket) in one directory, on free local
ports, so it touches nothing of the system's own Slurm or munge.

Needs root (slurmd starts jobs as the submitting user and sets up their
environment) and Debian's packages slurmctld, slurmd, slurm-client and munge.

From Python:
    with SlurmCluster(tmpdir) as cluster:
        job = cluster.sbatch(["script.sbatch"])
        cluster.wait_job(job, ("COMPLETED",))
By hand:
    python3 tests/slurm/kgslurm.py start DIR    # prints export SLURM_CONF=...
    python3 tests/slurm/kgslurm.py stop DIR
"""
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

DAEMONS = ("munged", "slurmctld", "slurmd")
CLIENTS = ("sbatch", "squeue", "scontrol", "scancel", "srun", "sinfo")
SBIN = ("/usr/sbin", "/sbin", "/usr/bin")


def _find(name):
    path = shutil.which(name)
    if path:
        return path
    for d in SBIN:
        if os.access(os.path.join(d, name), os.X_OK):
            return os.path.join(d, name)
    return None


def missing_requirements():
    """Why this machine cannot run the cluster, or None."""
    if os.geteuid() != 0:
        return "a private Slurm needs root (slurmd runs jobs as their user)"
    absent = [n for n in DAEMONS + CLIENTS if not _find(n)]
    if absent:
        return ("not installed: " + ", ".join(absent) +
                " (apt-get install slurmctld slurmd slurm-client munge)")
    return None


def _free_ports(n):
    socks, ports = [], []
    for _ in range(n):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.bind(("127.0.0.1", 0))
        socks.append(s)
        ports.append(s.getsockname()[1])
    for s in socks:
        s.close()
    return ports


class SlurmError(RuntimeError):
    pass


class SlurmCluster:
    """One node (this host) in one partition `debug`. `cpus` may exceed the
    real core count (SlurmdParameters=config_overrides) so that tests can
    start more ranks than cores."""

    def __init__(self, root, cpus=8, name="kgtest"):
        self.root = Path(root).resolve()
        self.cpus = cpus
        self.cluster_name = name
        self.node = socket.gethostname().split(".")[0]
        self.conf = self.root / "slurm.conf"
        self.procs = {}

    # ---- environment -------------------------------------------------
    @property
    def env(self):
        """The process environment for Slurm commands (and the jobs they
        submit, which inherit it): our config, no outer job's variables."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("SLURM_")}
        env["SLURM_CONF"] = str(self.conf)
        return env

    def run(self, *cmd, check=True, timeout=60, env=None):
        """Runs a Slurm client command against this cluster (`env`: instead of self.env)."""
        proc = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, env=env or self.env,
                              timeout=timeout)
        if check and proc.returncode != 0:
            raise SlurmError(f"{' '.join(map(str, cmd))} exited {proc.returncode}: {proc.stderr.strip()}")
        return proc

    # ---- start / stop --------------------------------------------------
    def _write_config(self):
        r = self.root
        for d in ("state", "spool", "log", "munge", "run"):
            (r / d).mkdir(parents=True, exist_ok=True)
        # munged refuses a key readable by others and a socket directory that
        # is not searchable by all.
        os.chmod(r / "munge", 0o700)
        os.chmod(r / "run", 0o755)
        os.chmod(r, 0o755)
        key = r / "munge" / "munge.key"
        if not key.exists():
            key.write_bytes(os.urandom(128))
        os.chmod(key, 0o600)
        ctld_port, d_port = _free_ports(2)
        lines = [
            f"ClusterName={self.cluster_name}",
            f"SlurmctldHost={self.node}(127.0.0.1)",
            f"SlurmctldPort={ctld_port}",
            f"SlurmdPort={d_port}",
            "SlurmUser=root",
            "SlurmdUser=root",
            "AuthType=auth/munge",
            "CredType=cred/munge",
            # A requeued job waits cred_expire seconds before it may start again.
            f"AuthInfo=socket={r}/run/munge.sock,cred_expire=12",
            f"StateSaveLocation={r}/state",
            f"SlurmdSpoolDir={r}/spool",
            f"SlurmctldPidFile={r}/run/slurmctld.pid",
            f"SlurmdPidFile={r}/run/slurmd.pid",
            f"SlurmctldLogFile={r}/log/slurmctld.log",
            f"SlurmdLogFile={r}/log/slurmd.log",
            # No cgroups in a container: plain process tracking, no task binding.
            "ProctrackType=proctrack/linuxproc",
            "TaskPlugin=task/none",
            "SelectType=select/cons_tres",
            "SelectTypeParameters=CR_CPU",
            "MpiDefault=pmix",
            "JobAcctGatherType=jobacct_gather/none",
            "AccountingStorageType=accounting_storage/none",
            "JobCompType=jobcomp/none",
            "SchedulerType=sched/builtin",
            # The main scheduler loop runs every 60 s by default: a requeued job
            # whose begin time passed would wait for it.
            "SchedulerParameters=sched_interval=1",
            "ReturnToService=2",
            "SlurmdParameters=config_overrides",
            "KillWait=5",
            "MinJobAge=600",
            "InactiveLimit=0",
            "SlurmctldTimeout=30",
            "SlurmdTimeout=30",
            f"NodeName={self.node} NodeAddr=127.0.0.1 CPUs={self.cpus} RealMemory=8000 State=UNKNOWN",
            f"PartitionName=debug Nodes={self.node} Default=YES MaxTime=INFINITE State=UP",
        ]
        self.conf.write_text("\n".join(lines) + "\n")

    def _spawn(self, name, cmd):
        log = open(self.root / "log" / f"{name}.out", "ab")
        self.procs[name] = subprocess.Popen([str(c) for c in cmd], stdout=log, stderr=subprocess.STDOUT,
                                            env=self.env, start_new_session=True)
        log.close()
        (self.root / "run" / f"{name}.child.pid").write_text(str(self.procs[name].pid))

    def _check_alive(self):
        for name, p in self.procs.items():
            if p.poll() is not None:
                tail = (self.root / "log" / f"{name}.out").read_text(errors="replace")[-2000:]
                raise SlurmError(f"{name} exited {p.returncode}:\n{tail}")

    def start(self, timeout=60):
        why = missing_requirements()
        if why:
            raise SlurmError(why)
        self._write_config()
        r = self.root
        self._spawn("munged", [_find("munged"), "-F", "--force", f"--key-file={r}/munge/munge.key",
                               f"--socket={r}/run/munge.sock", f"--pid-file={r}/run/munged.pid",
                               f"--log-file={r}/log/munged.log", f"--seed-file={r}/munge/seed"])
        self._wait(lambda: (r / "run" / "munge.sock").exists(), timeout, "munged socket")
        # -i: ignore state left by an earlier cluster in the same directory.
        self._spawn("slurmctld", [_find("slurmctld"), "-D", "-i", "-f", self.conf])
        self._wait(lambda: self.run("scontrol", "ping", check=False).stdout.find("UP") >= 0, timeout, "slurmctld")
        self._spawn("slurmd", [_find("slurmd"), "-D", "-f", self.conf, "-N", self.node])
        self._wait(lambda: self.node_state() == "idle", timeout, "the node to be idle")
        return self

    def _wait(self, ready, timeout, what):
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            self._check_alive()
            try:
                if ready():
                    return
            except (SlurmError, subprocess.TimeoutExpired):
                pass
            time.sleep(0.3)
        raise SlurmError(f"timed out after {timeout} s waiting for {what}; logs in {self.root / 'log'}")

    def node_state(self):
        out = self.run("sinfo", "-h", "-N", "-o", "%T", check=False).stdout.strip()
        return out.rstrip("*~#") if out else ""

    def stop(self):
        if not self.procs:
            return
        # Jobs first, so that slurmd can end their steps itself.
        if self.procs.get("slurmctld") and self.procs["slurmctld"].poll() is None:
            self.run("scancel", "--full", "-u", "root", check=False)
            end = time.monotonic() + 20
            while time.monotonic() < end and self.run("squeue", "-h", check=False).stdout.strip():
                time.sleep(0.5)
        for name in ("slurmd", "slurmctld", "munged"):
            p = self.procs.get(name)
            if p is None or p.poll() is not None:
                continue
            p.send_signal(signal.SIGTERM)
            try:
                p.wait(timeout=20)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(timeout=10)
        self.procs = {}

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    # ---- jobs ------------------------------------------------------------
    def sbatch(self, args, cwd=None):
        proc = subprocess.run(["sbatch", "--parsable", *map(str, args)], capture_output=True, text=True,
                              env=self.env, cwd=cwd, timeout=60)
        if proc.returncode != 0:
            raise SlurmError(f"sbatch failed: {proc.stderr.strip()}")
        return proc.stdout.strip().split(";")[0]

    def job(self, job_id):
        """scontrol's fields of a job as a dict (JobState, ExitCode, Restarts, ...)."""
        out = self.run("scontrol", "-o", "show", "job", str(job_id)).stdout.strip()
        fields = {}
        for word in out.split():
            if "=" in word:
                k, v = word.split("=", 1)
                fields[k] = v
        return fields

    def wait_job(self, job_id, states, timeout=300, poll=0.5):
        """Waits until the job is in one of `states`; returns its fields.
        A final state not in `states` raises."""
        final = {"COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL", "OUT_OF_MEMORY", "BOOT_FAIL", "DEADLINE"}
        end = time.monotonic() + timeout
        info = {}
        while time.monotonic() < end:
            self._check_alive()
            info = self.job(job_id)
            state = info.get("JobState", "")
            if state in states:
                return info
            if state in final:
                raise SlurmError(f"job {job_id} ended {state} (exit {info.get('ExitCode')}), wanted {states}")
            time.sleep(poll)
        raise SlurmError(f"job {job_id} still {info.get('JobState')} after {timeout} s, wanted {states}")


def _main(argv):
    if len(argv) != 3 or argv[1] not in ("start", "stop"):
        print(__doc__, file=sys.stderr)
        return 2
    root = Path(argv[2])
    if argv[1] == "start":
        cluster = SlurmCluster(root).start()
        # Daemons live on in their own sessions after this process exits.
        cluster.procs = {}
        print(f"export SLURM_CONF={cluster.conf}")
        return 0
    for name in ("slurmd", "slurmctld", "munged"):
        pid_file = root / "run" / f"{name}.child.pid"
        if pid_file.exists():
            try:
                os.kill(int(pid_file.read_text()), signal.SIGTERM)
            except ProcessLookupError:
                pass
            pid_file.unlink()
            time.sleep(1)
    return 0


if __name__ == "__main__":
    sys.exit(_main(sys.argv))
