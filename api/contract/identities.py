"""Local-mode identities for schemathesis (loaded through SCHEMATHESIS_HOOKS by `make contract`): each
operation is called as the caller it serves, so the success paths are reached and not only 401/403. A
reader reads its own user (`x-local-user-id` is the path's `user_id`), the admin scope reads the error
report, the write scope writes. These headers count only in AUTH_MODE=local, which `make run` sets and no
deployment does."""

import schemathesis

WRITE_SCOPE = "tickets/write"
ADMIN_SCOPE = "tickets/admin"


@schemathesis.auth()
class LocalIdentity:
    def get(self, case, context):
        # Nothing to fetch: the identity depends on each case, so `set` works it out.
        return "local"

    def set(self, case, data, context):
        headers = dict(case.headers or {})
        operation = case.operation.definition.raw.get("operationId")
        if operation == "get_tickets":
            headers["x-local-user-id"] = str((case.path_parameters or {}).get("user_id", ""))
        elif operation == "error_report":
            headers["x-local-scope"] = ADMIN_SCOPE
        else:
            headers["x-local-scope"] = WRITE_SCOPE
        case.headers = headers
