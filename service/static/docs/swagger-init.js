// Starts Swagger UI on /docs from this file rather than an inline script, so the page's CSP needs no
// 'unsafe-inline' for scripts. The OpenAPI URL comes from the page (data-openapi-url).
(function () {
  "use strict";
  var root = document.getElementById("swagger-ui");
  window.ui = SwaggerUIBundle({
    url: root.getAttribute("data-openapi-url"),
    dom_id: "#swagger-ui",
    layout: "BaseLayout",
    deepLinking: true,
    showExtensions: true,
    showCommonExtensions: true,
    // the default sends the whole document to validator.swagger.io: an outbound call, and a CSP violation here
    validatorUrl: null,
    presets: [SwaggerUIBundle.presets.apis, SwaggerUIBundle.SwaggerUIStandalonePreset],
  });
})();
