"""CSV imports of leads, reps, accounts and contacts from real exports."""

from .accounts import import_accounts
from .base import ImportFileError, ImportReport, RowError, data_dir
from .contacts import DEFAULT_CONTACT_MAPPING, ImportMappingError, import_contacts
from .leads import import_leads
from .reps import import_reps

__all__ = [
    "DEFAULT_CONTACT_MAPPING",
    "ImportFileError",
    "ImportMappingError",
    "ImportReport",
    "RowError",
    "data_dir",
    "import_accounts",
    "import_contacts",
    "import_leads",
    "import_reps",
]
