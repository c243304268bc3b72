"""skiplock for Django: ``INSTALLED_APPS += ["skiplock.contrib.django"]``.

- A migration that applies skiplock's schema (``./manage.py migrate``).
- A ``django.tasks`` backend (``skiplock.contrib.django.backend.SkiplockBackend``; with the
  ``django-tasks`` backport before Django 6): enqueue inside ``transaction.atomic()`` on Django's
  own connection, defer with ``run_after``, priorities, results, ``async def`` tasks.
- ``./manage.py skiplock worker|monitor|jobs|queues|…``: the skiplock CLI on Django's database.
- Admin pages over the jobs and workers views, with retry and cancel actions.

See docs/django.md.
"""
