"""Apply skiplock's own migrations (sql/migrations, then sql/functions) to this database.

skiplock's schema lives in the `skiplock` schema and is versioned by skiplock itself (with its own
advisory lock, so running this beside ``skiplock migrate`` is safe). After upgrading skiplock,
``./manage.py skiplock migrate`` applies what is new.
"""

from __future__ import annotations

from typing import Any

from django.db import migrations


def apply_skiplock_schema(apps: Any, schema_editor: Any) -> None:
    from skiplock.contrib.django.conf import dsn_for
    from skiplock.migrate import Migrator

    Migrator(dsn_for(schema_editor.connection.alias)).up()


class Migration(migrations.Migration):
    atomic = False  # skiplock migrates in a transaction of its own, on its own connection
    initial = True
    dependencies = ()
    operations = (migrations.RunPython(apply_skiplock_schema, migrations.RunPython.noop, elidable=False),)
