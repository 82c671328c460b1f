// Swagger UI over /openapi.json. A file of its own: the page's Content-Security-Policy allows no
// inline script.
"use strict";

window.ui = SwaggerUIBundle({
  url: "/openapi.json",
  dom_id: "#swagger-ui",
  deepLinking: true,
  presets: [SwaggerUIBundle.presets.apis],
  layout: "BaseLayout",
  // No badge from validator.swagger.io: the page talks to this server only.
  validatorUrl: null,
  // A crafted link (/docs?url=…, ?configUrl=…) must not load another schema into this origin.
  queryConfigEnabled: false,
  // A token typed into Authorize lives in this page only, never in localStorage, where any later
  // script of this origin could read it.
  persistAuthorization: false,
});
