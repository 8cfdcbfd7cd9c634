"""The routes' dependencies: the shared :class:`PanelState` and the bearer-token check of mutating endpoints."""

from __future__ import annotations

import hmac
from typing import Annotated

from fastapi import Depends, HTTPException, Query, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from control_panel.state import PanelState

bearer = HTTPBearer(auto_error=False, description="DIFFSEM_PANEL_TOKEN, when the panel was started with one")


def get_state(request: Request) -> PanelState:
    return request.app.state.panel


Panel = Annotated[PanelState, Depends(get_state)]
Limit = Annotated[int, Query(ge=1, le=1000, description="how many records")]  # paging of the run and sweep lists
Offset = Annotated[int, Query(ge=0, description="records to skip, newest first")]


def require_token(state: Panel,
                  cred: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]) -> None:
    """Mutating endpoints: 401 unless ``Authorization: Bearer <token>`` matches (when a token is set)."""
    token = state.settings.token
    if not token:
        return
    if cred is None or not hmac.compare_digest(cred.credentials.encode(), token.encode()):
        raise HTTPException(401, "missing or wrong bearer token (Authorization: Bearer $DIFFSEM_PANEL_TOKEN)",
                            headers={"WWW-Authenticate": "Bearer"})


Authorized = [Depends(require_token)]
