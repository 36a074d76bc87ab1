"""``make run``'s console: polling request lines dropped, a repeated warning printed once."""

from hilapp.management.commands.rundev import ConsoleFilter

POLL = '[01/Dec/2026 11:11:51] "GET /api/v1/batches/3/ HTTP/1.1" 200 1834'
CARD = '[01/Dec/2026 11:11:52] "GET /review/hv1/next-card/?exclude=4,5 HTTP/1.1" 204 0'
PAGE = '[01/Dec/2026 11:11:53] "GET /synthesis/batches/3/ HTTP/1.1" 200 9000'
BROKER = (
    "[2026-12-01 11:11:5{n}: WARNING/MainProcess] No hostname was supplied. "
    "Reverting to default 'localhost'"
)


def test_quiet_console_drops_polling_and_repeats() -> None:
    console = ConsoleFilter(verbose=False)
    assert not console.keep(POLL) and not console.keep(CARD)
    assert console.keep(PAGE)
    assert console.keep('"GET /api/v1/batches/3/ HTTP/1.1" 500 10'), "a failing poll is shown"
    shown = [console.keep(BROKER.format(n=n)) for n in range(5)]
    assert shown == [True, False, False, False, False]
    assert console.keep("[..: WARNING/MainProcess] another warning")


def test_verbose_console_keeps_everything() -> None:
    console = ConsoleFilter(verbose=True)
    assert all(console.keep(line) for line in (POLL, CARD, BROKER.format(n=1), BROKER.format(n=2)))
