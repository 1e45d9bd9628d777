"""`refiner serve`: the paper's web interface (section 3, Figure 2) — FastAPI serving a JSON API and the
panels, with the demo's participants hosted in the server."""
