// Swagger UI on the gateway's own OpenAPI document: no validator badge (it would call out). A token the
// console keeps in this tab (sessionStorage, same origin) is put into "Authorize", so "Try it out" works.
window.addEventListener("DOMContentLoaded", () => {
  const token = window.sessionStorage.getItem("ho.console.token");
  window.ui = window.SwaggerUIBundle({
    url: "/api/openapi.json",
    dom_id: "#swagger-ui",
    validatorUrl: null,
    deepLinking: true,
    persistAuthorization: false,
    onComplete: () => {
      if (token) window.ui.preauthorizeApiKey("bearerAuth", token);
    },
  });
});
