"""Processes (listener, worker, web) that wire the library together; installed as
``unitumour_services``."""
