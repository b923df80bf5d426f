"""Django management commands of jupyter_ydjango."""
