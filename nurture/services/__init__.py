"""Domain actions of the nurture app: admin, API and tasks call these."""
