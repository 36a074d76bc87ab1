"""One date format everywhere (settings.FORMAT_MODULE_PATH): ISO dates, 24-hour times, UTC.

Django's English locale would print "Dec. 1, 2026, 11:11 a.m." next to the pages' explicit
"Y-m-d H:i" filters and the API's ISO strings; every page uses these instead.
"""

DATE_FORMAT = "Y-m-d"
DATETIME_FORMAT = "Y-m-d H:i"
SHORT_DATE_FORMAT = "Y-m-d"
SHORT_DATETIME_FORMAT = "Y-m-d H:i"
TIME_FORMAT = "H:i"
