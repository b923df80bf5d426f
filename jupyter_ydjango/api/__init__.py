"""The API: the Django Channels consumers, the HTTP views, the routes served in front of
Django's request cycle, and who is connecting."""
