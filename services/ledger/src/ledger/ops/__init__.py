"""Operations on files: import, export, reports (the CLI and the back-office call them)."""
