"""NokubeApplyer, as the seed describes it: the ``nokube`` CLI applies the bundle.

install() fetches the binary from ``nokube_download_url`` when it is not there yet, makes
it executable and checks that it runs; apply() pipes the YAML into
``nokube apply --cluster <cluster_name>``. nokube has no delete by inventory, so prune is
not supported.
"""

from __future__ import annotations

import os
import stat
import subprocess
import tempfile
from pathlib import Path

import requests

from syncworker.applyers.base import Applyer, TransientApplyError

DEFAULT_BIN_PATH = "/pod-workspace/bin/nokube"
HEALTH_CHECK_TIMEOUT = 30.0


class NokubeApplyer(Applyer):
    can_prune = False

    def __init__(
        self,
        *,
        cluster_name: str,
        nokube_download_url: str | None = None,
        bin_path: str = DEFAULT_BIN_PATH,
        timeout: float = 300.0,
        download_timeout: float = 60.0,
    ) -> None:
        self.cluster_name = cluster_name
        self.download_url = nokube_download_url
        self.bin_path = Path(bin_path)
        self.timeout = timeout
        self.download_timeout = download_timeout

    def install(self) -> tuple[bool, str]:
        if not self.bin_path.exists():
            if not self.download_url:
                return False, f"{self.bin_path} is missing and no nokube_download_url is set"
            try:
                self._download(self.download_url)
            except (requests.RequestException, OSError) as exc:
                return False, f"cannot download nokube from {self.download_url}: {exc}"
        try:
            mode = self.bin_path.stat().st_mode
            self.bin_path.chmod(mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
            result = subprocess.run(
                [str(self.bin_path), "--help"],
                capture_output=True,
                text=True,
                timeout=HEALTH_CHECK_TIMEOUT,
                check=False,
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            return False, f"{self.bin_path} does not run: {exc}"
        if result.returncode != 0:
            output = (result.stdout + result.stderr).strip()[-500:]
            return False, f"{self.bin_path} --help exited with {result.returncode}: {output}"
        first_line = next(iter(result.stdout.strip().splitlines()), "")
        return True, f"nokube at {self.bin_path}" + (f": {first_line}" if first_line else "")

    def _download(self, url: str) -> None:
        """Stream to a temporary file beside the target, then rename: a worker never sees
        (or runs) half a binary, and two workers installing at once do no harm."""
        self.bin_path.parent.mkdir(parents=True, exist_ok=True)
        with requests.get(url, stream=True, timeout=(10, self.download_timeout)) as response:
            response.raise_for_status()
            fd, tmp = tempfile.mkstemp(prefix=".nokube-", dir=self.bin_path.parent)
            try:
                with os.fdopen(fd, "wb") as out:
                    for chunk in response.iter_content(chunk_size=1 << 16):
                        out.write(chunk)
                os.chmod(tmp, 0o755)  # noqa: S103 - an executable everyone may run
                os.replace(tmp, self.bin_path)
            except BaseException:
                Path(tmp).unlink(missing_ok=True)
                raise

    def apply(self, yaml_content: str) -> tuple[bool, str]:
        command = [str(self.bin_path), "apply", "--cluster", self.cluster_name]
        try:
            result = subprocess.run(
                command,
                input=yaml_content,
                capture_output=True,
                text=True,
                timeout=self.timeout,
                check=False,
            )
        except subprocess.TimeoutExpired as exc:
            raise TransientApplyError(f"nokube apply timed out after {exc.timeout}s") from exc
        except OSError as exc:
            return False, f"cannot run {self.bin_path}: {exc}"
        return result.returncode == 0, (result.stdout + result.stderr).strip()
