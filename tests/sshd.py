"""A real OpenSSH server on localhost for DVC's SSH remote tests (Debian's openssh-server)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from tests.local_servers import free_port, wait_until_listening

SSHD = "/usr/sbin/sshd"


class LocalSSHServer:
    """sshd on 127.0.0.1:<free port>, key-only login for the current user, no system config touched."""

    def __init__(self, folder: Path) -> None:
        if not Path(SSHD).exists() or shutil.which("ssh-keygen") is None:
            raise RuntimeError("openssh-server is not installed: run scripts/system-deps.sh (apt-get install openssh-server)")
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)
        folder.chmod(0o700)
        self.port = free_port()
        self.host_key = folder / "host_ed25519"
        self.client_key = folder / "client_ed25519"
        for key in (self.host_key, self.client_key):
            subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
        self.authorized_keys = folder / "authorized_keys"
        shutil.copy(f"{self.client_key}.pub", self.authorized_keys)
        self.authorized_keys.chmod(0o600)
        self.config = folder / "sshd_config"
        self.config.write_text(
            f"Port {self.port}\nListenAddress 127.0.0.1\nHostKey {self.host_key}\n"
            f"AuthorizedKeysFile {self.authorized_keys}\nPasswordAuthentication no\nPubkeyAuthentication yes\n"
            "PermitRootLogin prohibit-password\nStrictModes no\nUsePAM no\nSubsystem sftp internal-sftp\n"
            f"PidFile {folder / 'sshd.pid'}\n"
        )
        Path("/run/sshd").mkdir(exist_ok=True)  # privilege-separation directory sshd insists on
        self.process: subprocess.Popen | None = None

    def __enter__(self) -> LocalSSHServer:
        self.process = subprocess.Popen([SSHD, "-D", "-e", "-f", str(self.config)],
                                        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        wait_until_listening(self.process, self.port, "sshd", lambda: self.process.stderr.read().decode(), timeout_s=10)
        return self

    def __exit__(self, *exc) -> None:
        if self.process:
            self.process.terminate()
            self.process.wait(timeout=10)
