//! `/v1/templates`: a tenant's templates, each write a new version. Every
//! route is the calling tenant's: another tenant's template is 404.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use herald_api::{
    ErrorBody, NewTemplate, Page, PageQuery, Template, TemplateQuery, TemplateVersion,
};
use herald_domain::{Channel, TemplateId, TemplateParts};
use herald_store::StoredTemplate;

use super::auth::{Caller, Tenant};
use super::error::ApiError;
use super::extract::{JsonBody, QueryParams};
use super::refusals::TenantAuthErrors;
use super::AppState;

fn parse_id(raw: &str) -> Result<TemplateId, ApiError> {
    raw.parse()
        .map_err(|_| ApiError::not_found("no such template"))
}

/// The parts, checked and compiled for `channel`: a syntax error is 422
/// naming the part and the line. The variables they refer to come back,
/// for the answer.
fn checked(channel: Channel, parts: &TemplateParts) -> Result<Vec<String>, ApiError> {
    let compiled = herald_templates::compile(channel, parts).map_err(ApiError::invalid_field)?;
    Ok(compiled.variables().iter().cloned().collect())
}

/// A stored version as the API shows it (compiled again for its variables).
fn view(t: StoredTemplate) -> Result<Template, ApiError> {
    let compiled = herald_templates::compile(t.channel, &t.parts)
        .map_err(|e| ApiError::internal("A stored template version does not compile", e))?;
    let variables = compiled.variables().iter().cloned().collect();
    Ok(view_with(t, variables))
}

/// A version just written, with the variables its check found.
fn view_with(t: StoredTemplate, variables: Vec<String>) -> Template {
    Template {
        id: t.id,
        name: t.name,
        channel: t.channel,
        version: t.version,
        current_version: t.current_version,
        variables,
        parts: t.parts.into(),
        created_at: t.created_at,
        updated_at: t.updated_at,
    }
}

/// `POST /v1/templates` → 201, version 1.
#[utoipa::path(
    post, path = "/v1/templates", tag = "templates", operation_id = "create_template",
    summary = "Create a template",
    request_body = NewTemplate,
    responses(
        (status = 201, description = "Created at version 1", body = Template),
        (status = 400, description = "The body is not JSON", body = ErrorBody),
        TenantAuthErrors,
        (status = 409, description = "The tenant has a template of this name", body = ErrorBody),
        (status = 413, description = "The body is over 1 MiB", body = ErrorBody),
        (status = 415, description = "The body is not application/json", body = ErrorBody),
        (status = 422, description = "A part is missing, does not apply to the channel, or does not compile (`field` names it, the message the line)", body = ErrorBody),
        (status = 503, description = "The database is unavailable; retry after `Retry-After` seconds", body = ErrorBody),
    ),
    security(("api_key" = []))
)]
pub async fn create_template(
    State(state): State<AppState>,
    Tenant(Caller { tenant, .. }): Tenant,
    JsonBody(body): JsonBody<NewTemplate>,
) -> Result<(StatusCode, Json<Template>), ApiError> {
    let name = herald_api::templates::template_name(&body.name).map_err(ApiError::invalid_field)?;
    let parts: TemplateParts = body.parts.into();
    let variables = checked(body.channel, &parts)?;
    let stored = state
        .store
        .create_template(tenant, TemplateId::new(), &name, body.channel, &parts)
        .await?;
    tracing::info!(tenant_id = %tenant, template_id = %stored.id, "Created a template.");
    Ok((StatusCode::CREATED, Json(view_with(stored, variables))))
}

/// `GET /v1/templates?cursor=&limit=`.
#[utoipa::path(
    get, path = "/v1/templates", tag = "templates", operation_id = "list_templates",
    summary = "List the tenant's templates (current versions)",
    params(PageQuery),
    responses(
        (status = 200, description = "A page of templates", body = Page<Template>),
        TenantAuthErrors,
        (status = 422, description = "A parameter is invalid (named in `field`)", body = ErrorBody),
        (status = 503, description = "The database is unavailable; retry after `Retry-After` seconds", body = ErrorBody),
    ),
    security(("api_key" = []))
)]
pub async fn list_templates(
    State(state): State<AppState>,
    Tenant(Caller { tenant, .. }): Tenant,
    QueryParams(q): QueryParams<PageQuery>,
) -> Result<Json<Page<Template>>, ApiError> {
    let (after, limit) = q.parse().map_err(ApiError::invalid_field)?;
    let rows = state
        .store
        .list_templates(tenant, after, i64::from(limit) + 1)
        .await?;
    let page = Page::from_rows(rows, limit as usize, |t| t.id.to_string(), view);
    Ok(Json(Page {
        items: page.items.into_iter().collect::<Result<_, _>>()?,
        next_cursor: page.next_cursor,
    }))
}

/// `GET /v1/templates/{id}?version=`.
#[utoipa::path(
    get, path = "/v1/templates/{id}", tag = "templates", operation_id = "get_template",
    summary = "Read a template at its current or a given version",
    params(("id" = String, Path, description = "The template's id"), TemplateQuery),
    responses(
        (status = 200, description = "The version", body = Template),
        TenantAuthErrors,
        (status = 404, description = "No such template (or version) for this tenant", body = ErrorBody),
        (status = 422, description = "`version` is not a version number", body = ErrorBody),
        (status = 503, description = "The database is unavailable; retry after `Retry-After` seconds", body = ErrorBody),
    ),
    security(("api_key" = []))
)]
pub async fn get_template(
    State(state): State<AppState>,
    Tenant(Caller { tenant, .. }): Tenant,
    Path(id): Path<String>,
    QueryParams(q): QueryParams<TemplateQuery>,
) -> Result<Json<Template>, ApiError> {
    let version = q.parse().map_err(ApiError::invalid_field)?;
    let id = parse_id(&id)?;
    let stored = state
        .store
        .template(tenant, id, version)
        .await?
        .ok_or_else(|| match version {
            Some(v) => ApiError::not_found(&format!("no version {v} of this template")),
            None => ApiError::not_found("no such template"),
        })?;
    Ok(Json(view(stored)?))
}

/// `PUT /v1/templates/{id}` → the next version. Messages already queued
/// keep the version they were pinned to.
#[utoipa::path(
    put, path = "/v1/templates/{id}", tag = "templates", operation_id = "put_template",
    summary = "Write a template's next version",
    params(("id" = String, Path, description = "The template's id")),
    request_body = TemplateVersion,
    responses(
        (status = 200, description = "The new current version", body = Template),
        (status = 400, description = "The body is not JSON", body = ErrorBody),
        TenantAuthErrors,
        (status = 404, description = "No such template for this tenant", body = ErrorBody),
        (status = 409, description = "The tenant has another template of the new name", body = ErrorBody),
        (status = 413, description = "The body is over 1 MiB", body = ErrorBody),
        (status = 415, description = "The body is not application/json", body = ErrorBody),
        (status = 422, description = "A part is missing, does not apply to the channel, or does not compile (`field` names it, the message the line)", body = ErrorBody),
        (status = 503, description = "The database is unavailable; retry after `Retry-After` seconds", body = ErrorBody),
    ),
    security(("api_key" = []))
)]
pub async fn put_template(
    State(state): State<AppState>,
    Tenant(Caller { tenant, .. }): Tenant,
    Path(id): Path<String>,
    JsonBody(body): JsonBody<TemplateVersion>,
) -> Result<Json<Template>, ApiError> {
    let id = parse_id(&id)?;
    let name = body
        .name
        .as_deref()
        .map(herald_api::templates::template_name)
        .transpose()
        .map_err(ApiError::invalid_field)?;
    let parts: TemplateParts = body.parts.into();
    let variables = checked(body.channel, &parts)?;
    let stored = state
        .store
        .put_template(tenant, id, name.as_deref(), body.channel, &parts)
        .await?
        .ok_or_else(|| ApiError::not_found("no such template"))?;
    // This producer pins the next message to the new version at once;
    // the others when the write's notification reaches them.
    state.templates.forget(tenant, id);
    tracing::info!(tenant_id = %tenant, template_id = %id, version = stored.version, "Wrote a template version.");
    Ok(Json(view_with(stored, variables)))
}

/// `DELETE /v1/templates/{id}` → 204: new messages can no longer name it;
/// those already queued are still rendered from their version.
#[utoipa::path(
    delete, path = "/v1/templates/{id}", tag = "templates", operation_id = "delete_template",
    summary = "Delete a template",
    params(("id" = String, Path, description = "The template's id")),
    responses(
        (status = 204, description = "Deleted"),
        TenantAuthErrors,
        (status = 404, description = "No such template for this tenant", body = ErrorBody),
        (status = 503, description = "The database is unavailable; retry after `Retry-After` seconds", body = ErrorBody),
    ),
    security(("api_key" = []))
)]
pub async fn delete_template(
    State(state): State<AppState>,
    Tenant(Caller { tenant, .. }): Tenant,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let id = parse_id(&id)?;
    if state.store.delete_template(tenant, id).await? {
        state.templates.forget(tenant, id);
        tracing::info!(tenant_id = %tenant, template_id = %id, "Deleted a template.");
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::not_found("no such template"))
    }
}
