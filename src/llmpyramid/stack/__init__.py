"""Local inference stack: the embedded llama.cpp server as a managed service (embedded.py, server.py),
its benchmark (bench.py) and the Docker compose path (docker.py). Which server a run tests is
llmpyramid.target's rule; starting one for a run is `embedded.target_session`.
"""
