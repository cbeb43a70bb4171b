// Hostile clients: written with the hardening issue.
