"""`dim serve`: a local web page to matte your own photos, and the HTTP API behind it.

Modules, in the order a request meets them: `server` binds the socket and runs uvicorn; `app` routes the
requests and turns errors into JSON; `uploads` reads the multipart body within the size and pixel limits;
`device` queues predictions so that one runs at a time; `jobs` does the work with the same functions as
`dim predict`. `static/` holds the page (plain HTML, CSS and JavaScript modules: no build step, no CDN).

Needs the `serve` extra (`pip install "dimatting[serve]"`): Starlette, uvicorn and python-multipart.
"""
