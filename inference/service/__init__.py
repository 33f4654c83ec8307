"""The service layer: what the server does, in no particular protocol.

`Runtime` (the loaded models, the queue, readiness), `GenerationService` (a request in
A1111's shape -> validated, seeded batch tasks -> A1111's response) and `A1111State`
(the options and interrupt/skip flags A1111 keeps between requests). Nothing here knows
HTTP: problems are raised as the domain errors of `inference/errors.py`, and `api/`
turns them into each dialect's responses.
"""
