"""How an export talks to its helper processes (writers, planners): one protocol for both.

Each helper reads messages from its inbox pipe and answers each on its outbox pipe, until it
gets ``None``. It does not die on a failure: it reports it as ``("error", text, expected)``,
where ``expected`` says the text is an ``ExportError``'s message (bad data, said to the user as
it is) rather than a traceback (a bug). The exporting process raises it again with
``raise_reported``. Standard library only: writer processes import this and nothing of Django.
"""

from __future__ import annotations

import traceback
from collections.abc import Callable
from multiprocessing.connection import Connection
from typing import Any, NoReturn

from synthesis.export.options import ExportError

Message = tuple[Any, ...]


def serve(inbox: Connection, outbox: Connection, handle: Callable[[Message], Message]) -> bool:
    """Answer messages with ``handle`` until ``None``; True then. False after a failure, which
    was reported, or when the exporting process is gone (nobody is left to tell)."""
    try:
        while (message := inbox.recv()) is not None:
            outbox.send(handle(message))
    except EOFError:
        return False
    except ExportError as exc:
        outbox.send(("error", str(exc), True))
        return False
    except BaseException:
        outbox.send(("error", traceback.format_exc(), False))
        return False
    return True


def raise_reported(reply: Message, helper: str) -> NoReturn:
    """Raise the failure a helper reported (``reply`` is its ``("error", …)`` message)."""
    _, text, expected = reply
    if expected:
        raise ExportError(text)
    raise RuntimeError(f"an export {helper} process failed:\n{text}")
