"""Store a digest of every API token instead of the token (``hilapp.tokens``).

Tokens issued before keep working: their keys are replaced by the digest of the key, which is
what ``HashedTokenAuthentication`` looks up. Not reversible: the plain keys are gone.
"""

import hashlib

from django.db import migrations

DIGEST_PREFIX = "h$"


def _digest_plain_keys(apps, schema_editor):  # type: ignore[no-untyped-def]
    Token = apps.get_model("authtoken", "Token")
    for token in Token.objects.exclude(key__startswith=DIGEST_PREFIX):
        digest = DIGEST_PREFIX + hashlib.blake2b(token.key.encode(), digest_size=19).hexdigest()
        Token.objects.filter(pk=token.pk).update(key=digest)


class Migration(migrations.Migration):
    dependencies = [("authtoken", "0004_alter_tokenproxy_options")]

    operations = [migrations.RunPython(_digest_plain_keys, migrations.RunPython.noop)]
