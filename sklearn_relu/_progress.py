"""What ``verbose`` shows: the ``"sklearn_relu"`` logger's records, and the
handler that draws them where logging was never set up.

Every epoch of a run is one ``INFO`` record of the ``"sklearn_relu"`` logger
(``verbose >= 1``), carrying an :class:`EpochProgress`, so that an application
that configures logging gets one line an epoch through its own handlers. Where
nothing is configured, :func:`log` installs a :class:`ProgressHandler` on
stderr: on a terminal it keeps one line up to date (a bar, the epoch, the
loss, the bytes sent and the time left); elsewhere (a file, a pipe, a CI log)
it writes one line every few epochs, about 50 a run at most, or every epoch
with ``verbose >= 2``. Under MPI every rank logs, and only the first rank's
epochs are drawn, so that the ranks' lines do not interleave.
"""

import logging
import math
import sys
from dataclasses import dataclass, replace

__all__ = ["EpochProgress", "ProgressHandler", "end_run", "log", "logger"]

logger = logging.getLogger("sklearn_relu")

#: Lines a run writes at most where the progress cannot be redrawn in place.
MAX_LINES = 50
#: Characters of the bar.
BAR_WIDTH = 20


@dataclass(frozen=True)
class EpochProgress:
    """An epoch's progress, as the record of its log line carries it
    (``record.progress``).

    Attributes
    ----------
    run, epoch, max_epochs : int
        The run, the epochs done (from 1) and the most it may run.
    loss : float
    bytes_sent : float
        The run's gradient messages so far, in bytes (NaN where unknown).
    elapsed : float
        Seconds since this call's first epoch began.
    epochs_timed : int
        Epochs this call ran (a resumed run's earlier ones are not timed).
    main : bool
        Whether this process draws it (the first MPI rank; the only process).
    verbose : int
    """

    run: int
    epoch: int
    max_epochs: int
    loss: float
    bytes_sent: float
    elapsed: float
    epochs_timed: int
    main: bool = True
    verbose: int = 1
    #: How the run ended, once it has ("converged", "stopped by the callback").
    status: str = ""

    @property
    def seconds_left(self):
        """The time the remaining epochs take at this call's pace: an upper
        bound, since the stopping rule may end the run before ``max_epochs``."""
        if self.epochs_timed <= 0:
            return math.nan
        return self.elapsed / self.epochs_timed * (self.max_epochs - self.epoch)

    def line(self):
        """One line: the run, a bar, the epoch, the loss, the bytes sent, the
        time taken and the most left."""
        done = round(BAR_WIDTH * self.epoch / self.max_epochs)
        text = (
            f"run {self.run} [{'#' * done}{'.' * (BAR_WIDTH - done)}] "
            f"epoch {self.epoch}/{self.max_epochs}  loss {self.loss:.4g}"
        )
        if math.isfinite(self.bytes_sent):
            text += f"  sent {_size(self.bytes_sent)}"
        text += f"  {self.elapsed:.1f} s"
        if self.status:
            return f"{text}, {self.status}"
        left = self.seconds_left
        if math.isfinite(left) and self.epoch < self.max_epochs:
            text += f", at most {left:.1f} s left" if left < 10 else f", at most {left:.0f} s left"
        return text


def _size(n_bytes):
    for unit in ("B", "kB", "MB", "GB"):
        if n_bytes < 1000 or unit == "GB":
            return f"{n_bytes:.0f} {unit}" if unit == "B" else f"{n_bytes:.1f} {unit}"
        n_bytes /= 1000


class ProgressHandler(logging.StreamHandler):
    """Draws the ``"sklearn_relu"`` logger's records on ``stream`` (stderr by
    default): an epoch's record as one line kept up to date on a terminal, or
    every few epochs elsewhere; any other record as a line of its own."""

    def __init__(self, stream=None):
        super().__init__(stream if stream is not None else sys.stderr)
        self.drawn = False  # an unfinished progress line is on the terminal
        self.pending = None  # an epoch not written yet (not on a terminal)
        self.last = None  # the last epoch drawn or pending

    def _interactive(self):
        isatty = getattr(self.stream, "isatty", None)
        return bool(isatty and isatty())

    def emit(self, record):
        try:
            progress = getattr(record, "progress", None)
            if progress is None:
                self._finish_line()
                super().emit(record)
            elif progress.main:
                self._draw(progress)
        except Exception:  # as logging's own handlers do
            self.handleError(record)

    def _draw(self, progress):
        self.last = progress
        last = progress.epoch == progress.max_epochs
        if self._interactive():
            # Carriage return, the line, and erase what a longer one left.
            self.stream.write("\r" + progress.line() + "\033[K")
            self.drawn = True
            if last:
                self._finish_line()
            self.flush()
            return
        every = 1 if progress.verbose >= 2 else math.ceil(progress.max_epochs / MAX_LINES)
        self.pending = progress
        if last or progress.epoch % every == 0:
            self._write_pending()

    def _write_pending(self):
        if self.pending is not None:
            self.stream.write(self.pending.line() + self.terminator)
            self.pending = None
            self.flush()

    def _finish_line(self):
        if self.drawn:
            self.stream.write(self.terminator)
            self.drawn = False

    def end_run(self, status=""):
        """A run ended (maybe before ``max_epochs``, as ``status`` says): its
        last epoch is written, with the status, and the next line starts
        afresh."""
        if status and self.last is not None:
            final = replace(self.last, status=status)
            if self.drawn:
                self.stream.write("\r" + final.line() + "\033[K")
            elif self.pending is not None:
                self.pending = final
            else:  # its last epoch's line is written: say how it ended
                self.stream.write(f"run {final.run}: {status} after epoch {final.epoch}"
                                  + self.terminator)
        self._write_pending()
        self._finish_line()
        self.last = None
        self.flush()


def log(message, progress=None):
    """Log ``message`` (with ``progress``, an epoch's :class:`EpochProgress`)
    to the ``"sklearn_relu"`` logger; where logging was never set up, draw it
    with a :class:`ProgressHandler` (``verbose=1`` must show something)."""
    if not logger.handlers and not logging.getLogger().handlers:
        logger.addHandler(ProgressHandler())
        logger.setLevel(logging.INFO)
    logger.info(message, extra=None if progress is None else {"progress": progress})


def end_run(status=""):
    """Tell the drawing handlers that a run ended, and how (``status``)."""
    for handler in logger.handlers:
        if isinstance(handler, ProgressHandler):
            handler.end_run(status)
