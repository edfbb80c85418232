"""The registry's HTTP API (`/api/v1/sites`). Reading needs any valid bearer token;
who may write is decided by `domain.permissions`, applied by the use cases: a
supervisor, within their department."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Path, Query, Request, Response, status
from fastapi.exceptions import RequestValidationError

from relais_kit.auth import User, current_user
from relais_kit.runtime import Runtime
from relais_sites.adapters.store import SiteFilter
from relais_sites.domain import InvalidSite, Operator, SiteKind
from relais_sites.domain.codes import DEPARTMENT, SITE_ID
from relais_sites.domain.permissions import NotAllowed
from relais_sites.entrypoints.schemas import (
    ErrorBody,
    SiteBody,
    SiteList,
    SiteView,
    ValidationErrorBody,
)
from relais_sites.service_layer import sites as use_cases

router = APIRouter(prefix="/api/v1/sites", tags=["sites"])

Reader = Annotated[User, Depends(current_user)]
# Any valid token; whether it may make the change asked for is the use case's question.
Writer = Annotated[User, Depends(current_user)]
SiteIdPath = Annotated[str, Path(pattern=SITE_ID.pattern, description="The site id (a slug).")]

_AUTH_ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"model": ErrorBody, "description": "No or invalid bearer token."},
    # What relais_kit.web answers to a bad request (FastAPI would document its own body).
    422: {"model": ValidationErrorBody, "description": "A parameter breaks the schema; "
                                                       "`errors` names each field at fault."},
}
_WRITE_ERRORS: dict[int | str, dict[str, Any]] = {
    **_AUTH_ERRORS,
    403: {"model": ErrorBody, "description": "Not yours to change: only a supervisor changes the registry, "
                                             "and only the sites of their own department (the site as "
                                             "described, as registered, and the site it depends on); ops "
                                             "are read-only. `detail` says why."},
    422: {"model": ValidationErrorBody, "description": "The body breaks the schema or a registry rule; "
                                                       "`errors` names each field at fault."},
}


def runtime_of(request: Request) -> Runtime:
    runtime: Runtime | None = getattr(request.app.state, "runtime", None)
    if runtime is None:
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, "the service is starting")
    return runtime


RuntimeDep = Annotated[Runtime, Depends(runtime_of)]


@router.get("", response_model=SiteList, summary="List sites", responses=_AUTH_ERRORS)
async def list_sites(
    runtime: RuntimeDep, _: Reader,
    operator: Annotated[Operator | None, Query(description="Only sites serving this operator.")] = None,
    kind: Annotated[SiteKind | None, Query(description="Only sites of this kind.")] = None,
    department: Annotated[str | None, Query(pattern=DEPARTMENT.pattern,
                                            description="Only sites of this department.")] = None,
    parent_site_id: Annotated[str | None, Query(pattern=SITE_ID.pattern,
                                                description="Only the sites depending on this one.")] = None,
    include_retired: Annotated[bool, Query(description="Also list retired sites.")] = False,
) -> SiteList:
    where = SiteFilter(operator=operator.value if operator else None, kind=kind.value if kind else None,
                       department=department, parent_site_id=parent_site_id,
                       include_retired=include_retired)
    records = await use_cases.list_sites(runtime, where)
    return SiteList(count=len(records), sites=[SiteView.of(r) for r in records])


@router.get("/{site_id}", response_model=SiteView, summary="Get one site (retired ones too)",
            responses={**_AUTH_ERRORS, 404: {"model": ErrorBody, "description": "Unknown site."}})
async def get_site(site_id: SiteIdPath, runtime: RuntimeDep, _: Reader) -> SiteView:
    try:
        return SiteView.of(await use_cases.get_site(runtime, site_id))
    except use_cases.SiteNotFound as exc:
        raise HTTPException(status.HTTP_404_NOT_FOUND, str(exc)) from exc


@router.post("", response_model=SiteView, status_code=status.HTTP_200_OK,
             summary="Create or update a site",
             description="Publishes `site.upserted` on the `sites` topic when the site is new or "
                         "changed; posting the same description again publishes nothing.",
             responses={**_WRITE_ERRORS,
                        200: {"description": "The site existed; it is updated (or was unchanged)."},
                        201: {"model": SiteView, "description": "The site is created."}})
async def upsert_site(body: SiteBody, response: Response, runtime: RuntimeDep, user: Writer) -> SiteView:
    try:
        outcome = await use_cases.upsert_site(runtime, body.to_domain(), by=user)
    except InvalidSite as exc:
        raise _unprocessable(exc) from exc
    except NotAllowed as exc:
        raise HTTPException(status.HTTP_403_FORBIDDEN, str(exc)) from exc
    if outcome.created:
        response.status_code = status.HTTP_201_CREATED
        response.headers["Location"] = f"{router.prefix}/{outcome.record.site_id}"
    return SiteView.of(outcome.record)


@router.delete("/{site_id}", response_model=SiteView, summary="Retire a site",
               description="Publishes `site.retired`; retiring a retired site publishes nothing. "
                           "A site that active permanences or buses depend on cannot be retired.",
               responses={**_WRITE_ERRORS,
                          404: {"model": ErrorBody, "description": "Unknown site."},
                          409: {"model": ErrorBody, "description": "Active sites depend on this one."}})
async def retire_site(site_id: SiteIdPath, runtime: RuntimeDep, user: Writer) -> SiteView:
    try:
        outcome = await use_cases.retire_site(runtime, site_id, by=user)
    except NotAllowed as exc:
        raise HTTPException(status.HTTP_403_FORBIDDEN, str(exc)) from exc
    except use_cases.SiteNotFound as exc:
        raise HTTPException(status.HTTP_404_NOT_FOUND, str(exc)) from exc
    except use_cases.SiteHasDependents as exc:
        raise HTTPException(status.HTTP_409_CONFLICT, str(exc)) from exc
    return SiteView.of(outcome.record)


def _unprocessable(exc: InvalidSite) -> RequestValidationError:
    """Domain problems reported like schema errors: 422, each naming its field."""
    return RequestValidationError([
        {"type": "value_error", "loc": ("body", *p.field.split(".")), "msg": p.message}
        for p in exc.problems
    ])
