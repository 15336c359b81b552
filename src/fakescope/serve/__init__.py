"""`fakescope serve`: an HTTP API and a web page over one loaded detector.

`create_app(detector_or_factory, settings)` builds the FastAPI app (tests drive it with
TestClient); `serve(...)` loads the model and runs it under uvicorn.
"""
