"""A noisy serial line: the chunk size of a link, halved when frames keep arriving damaged
(a short frame is less likely to be hit) and doubled back after a run of clean commands,
and ``LineErrors``, raised when a command gives up although the device answered.

:class:`tinydeploy.device.link.Link` reports every command's line errors to
:meth:`ChunkSize.note` and asks :meth:`ChunkSize.size` how many input/output bytes one
frame carries.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import TinyDeployError

MIN_CHUNK = 48  # input/output bytes per frame the chunks shrink to on a noisy line
SHRINK_AFTER = 3  # line errors within one command that halve the chunk size
GROW_AFTER = 32  # clean commands in a row that double it again (up to the device's limit)


@dataclass
class ChunkSize:
    """Bytes per frame: the device's limit, or less (``limit``) while the line is noisy."""

    limit: int = 0  # 0: the device's limit
    shrinks: int = 0  # times the size was halved
    clean: int = 0  # commands in a row without a line error

    def size(self, full: int) -> int:
        """The chunk size for a device whose frames carry at most ``full`` bytes."""
        return min(full, self.limit) if self.limit else full

    def shrink(self, full: int) -> bool:
        """Halve the chunk size (False: it is ``MIN_CHUNK`` already)."""
        self.clean = 0
        current = self.size(full)
        if current <= MIN_CHUNK:
            return False
        self.limit = max(MIN_CHUNK, current // 2)
        self.shrinks += 1
        return True

    def note(self, line_errors: int, full: int) -> None:
        """One command ended after ``line_errors`` damaged frames: halve the size after
        ``SHRINK_AFTER`` of them, double it after ``GROW_AFTER`` clean commands in a row."""
        if line_errors >= SHRINK_AFTER:
            self.shrink(full)
        elif line_errors:
            self.clean = 0
        else:
            self.clean += 1
            if self.limit and self.clean >= GROW_AFTER:
                self.limit, self.clean = self.limit * 2, 0
                if self.limit >= full:
                    self.limit = 0


class LineErrors(TinyDeployError):
    """The device answered, but the line damaged the frames (``link_errors``)."""

    def __init__(self, port: str, damaged: int, sends: int, timeouts: int) -> None:
        silent = f", {timeouts} without an answer" if timeouts else ""
        super().__init__("link_errors", port=port,
                         detail=f"{damaged} of {sends} attempts met a damaged frame (CRC or "
                                f"framing error){silent}")
