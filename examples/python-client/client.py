"""A client of the tollgate API through a client generated from api/openapi.json by
openapi-python-client (the `tollgate_client` package; docs/api.md says how to generate it).
The same five calls as examples/client.sh, typed this time: health, an echo, that echo's record
by its x-request-id, the log listed with filters, and an RFC 9457 problem parsed as the
document's Problem model. One JSON line per step on stdout; any answer the document does not
promise for that step is an error (exit 1).

    PYTHONPATH=<dir holding tollgate_client> python client.py [base-url]   # default http://127.0.0.1:8080

TOLLGATE_TOKEN, when set, is sent as `Authorization: Bearer <token>` on every call (the API keys
that /v1/requests may require); unset, the calls carry no credentials.

ingress/tests/python_client.rs generates the client and runs this against a live ingress.
"""

import datetime
import json
import os
import sys
import time
import uuid

from tollgate_client import AuthenticatedClient, Client
from tollgate_client.api.echo import echo_get_rest
from tollgate_client.api.operations import health
from tollgate_client.api.requests import get_request, list_requests
from tollgate_client.models import Echo, Health, Problem, RequestDetail, RequestPage
from tollgate_client.models.request_detail_audit_state import RequestDetailAuditState


def say(**fields):
    print(json.dumps(fields, sort_keys=True), flush=True)


def expect(parsed, model, what, response):
    """The parsed body when it is the model the document promises; else stop with the answer."""
    if not isinstance(parsed, model):
        sys.exit(f"{what}: expected {model.__name__}, got HTTP {response.status_code}: {response.content[:400]!r}")
    return parsed


def main():
    base = sys.argv[1] if len(sys.argv) > 1 else "http://127.0.0.1:8080"
    token = os.environ.get("TOLLGATE_TOKEN")
    # raise_on_unexpected_status: a status the document does not list is an error, not None.
    if token:
        client = AuthenticatedClient(base_url=base, token=token, raise_on_unexpected_status=True)
    else:
        client = Client(base_url=base, raise_on_unexpected_status=True)
    started = datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(seconds=5)

    with client:
        # 1. Health (answered by the ingress itself, not recorded).
        r = health.sync_detailed(client=client)
        say(health=expect(r.parsed, Health, "health", r).status.value)

        # 2. An echo. Its answer names its record in x-request-id.
        r = echo_get_rest.sync_detailed("python-client", client=client)
        echo = expect(r.parsed, Echo, "echo", r)
        request_id = r.headers["x-request-id"]
        # The echo shows the headers it was sent, secrets redacted: with a token,
        # authorization is there as ["[REDACTED]"].
        say(echo={"method": echo.method, "path": echo.path,
                  "authorization": echo.headers.additional_properties.get("authorization")},
            request_id=request_id)

        # 3. Its record, and its audit event once the audit writer has written it (within a second).
        for _ in range(50):
            r = get_request.sync_detailed(request_id, client=client)
            detail = expect(r.parsed, RequestDetail, "record", r)
            if detail.audit.state == RequestDetailAuditState.WRITTEN:
                break
            time.sleep(0.1)
        record = detail.request
        say(record={"request_id": record.request_id, "status": record.status, "route": record.route,
                    "function": record.function_name},
            audit=detail.audit.state.value, object_key=detail.audit.object_key)

        # 4. The log, filtered: GETs under that path with status 200 since just before this run.
        r = list_requests.sync_detailed(client=client, since=started, method="GET", status=200,
                                        path_prefix="/v1/echo/python-client", limit=10)
        page = expect(r.parsed, RequestPage, "list", r)
        say(listed=[p.request_id for p in page.requests], next_cursor=page.next_cursor)

        # 5. A problem: an id that names no record is a 404, an RFC 9457 problem whose stable
        # `code` is what a client branches on.
        r = get_request.sync_detailed(str(uuid.uuid4()), client=client)
        problem = expect(r.parsed, Problem, "unknown record", r)
        say(http_status=r.status_code.value, content_type=r.headers.get("content-type"),
            problem={"type": problem.type_, "title": problem.title, "status": problem.status,
                     "code": problem.code.value, "detail": problem.detail, "instance": problem.instance,
                     "request_id": problem.request_id})


if __name__ == "__main__":
    main()
