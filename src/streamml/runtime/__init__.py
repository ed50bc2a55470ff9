"""The local stack: real servers under supervisord, their config, health checks and start order."""
