"""Schemathesis hooks for Herald's API check (deploy/local/api-check.sh).

Idempotency keys are stateful: a key reused with another body is refused
(422 idempotency_conflict), as API.md promises. Generated data reuses short
keys across unrelated requests, which is not how a client uses them, so each
request's keys are made unique here; everything else is sent as generated.
"""
import os
import re
import uuid

import schemathesis


def _valid_key(key):
    return isinstance(key, str) and 1 <= len(key) <= 255 and "\x00" not in key


def _unique(key):
    """A valid key made unique, still valid; an invalid one stays as it is,
    to be refused."""
    if not _valid_key(key):
        return key
    return key[: 255 - 33] + "-" + uuid.uuid4().hex


def _fix_message(message):
    if isinstance(message, dict) and "idempotency_key" in message:
        message["idempotency_key"] = _unique(message["idempotency_key"])


UUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")


@schemathesis.hook
def map_case(ctx, case):
    body = case.body
    if isinstance(body, dict):
        _fix_message(body)
        messages = body.get("messages")
        if isinstance(messages, list):
            for message in messages:
                _fix_message(message)
        # An id that must name something that exists: the check's own
        # tenant (a well-formed id only; a malformed one stays, to be refused).
        tenant = os.environ.get("HERALD_CHECK_TENANT_ID")
        given = body.get("tenant_id")
        if tenant and case.path == "/v1/admin/providers" and isinstance(given, str) and UUID.match(given):
            body["tenant_id"] = tenant
    headers = case.headers
    header = headers.get("Idempotency-Key") if headers else None
    # HTTP drops the spaces around a header value, and so does the producer.
    core = header.strip(" \t") if isinstance(header, str) else None
    if core and _valid_key(core):
        new = _unique(core)
        headers["Idempotency-Key"] = header.replace(core, new, 1)
        # A client that gives the key twice gives the same key.
        if isinstance(body, dict) and _valid_key(body.get("idempotency_key")):
            body["idempotency_key"] = new
    return case
