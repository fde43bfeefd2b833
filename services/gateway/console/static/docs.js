// Swagger UI on the gateway's own OpenAPI document: no validator badge (it would call out), the bearer
// token typed into "Authorize" kept for this tab only.
window.addEventListener("DOMContentLoaded", () => {
  window.ui = window.SwaggerUIBundle({
    url: "/api/openapi.json",
    dom_id: "#swagger-ui",
    validatorUrl: null,
    deepLinking: true,
    persistAuthorization: false,
    tryItOutEnabled: false,
  });
});
