"""A Service in; its admin routes out: GET and PUT /admin/canary, the canaries' shares, behind the
bearer token `--admin-token` sets (compared in constant time). Without a token they do not exist.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from litestar import Request, get, put
from litestar.exceptions import NotAuthorizedException
from litestar.handlers import HTTPRouteHandler
from litestar.params import JSONBody

from modelops.errors import DataIssue, DataValidationError
from modelops.serve.openapi import BEARER
from modelops.serve.routes import error_responses
from modelops.serve.routing import CanaryShares, token_matches

if TYPE_CHECKING:
    from modelops.serve.app import Service


def handlers(service: Service) -> list[HTTPRouteHandler]:
    """GET and PUT /admin/canary, behind the bearer token; none without a token."""
    token = service.config.admin_token
    if token is None:
        return []

    async def authorize(request: Request[Any, Any, Any]) -> None:
        if not token_matches(request.headers.get("authorization"), token):
            raise NotAuthorizedException(
                detail="send Authorization: Bearer <the server's admin token>",
                headers={"WWW-Authenticate": 'Bearer realm="modelops admin"'},
            )

    guarded: dict[str, Any] = {
        "before_request": authorize,
        "security": [{BEARER: []}],
        "responses": error_responses(
            (400, "an unknown version, or shares above 100% in total"),
            (401, "no bearer token, or not the server's"),
        ),
    }

    @get(
        "/admin/canary",
        summary="The share of traffic each canary answers",
        response_description="the shares, and what is left to the primary",
        **guarded,
    )
    async def shares() -> CanaryShares:
        if service.router is None:
            return CanaryShares({}, 100.0)
        service.router.sync()
        return service.router.state()

    @put(
        "/admin/canary",
        summary="Change the canaries' shares without a restart (every worker within a second)",
        response_description="the shares now in force",
        status_code=200,
        **guarded,
    )
    async def change(data: JSONBody[CanaryShares]) -> CanaryShares:
        if service.router is None:
            if data.shares:
                raise DataValidationError(
                    "request body",
                    [
                        DataIssue(
                            "$.shares", "this server has no canary (start it with --canary)", 0
                        )
                    ],
                )
            return CanaryShares({}, 100.0)
        return service.router.change(data.shares)

    return [shares, change]
