"""The learning loop (issue 15): analysts' corrections of batch rows and a versioned taxonomy per tenant.

* :mod:`.tables`: the two tables (``corrections``, ``taxonomy_versions``; migration 0005).
* :mod:`.corrections`: create, list and revert corrections; a row's corrected value; the KPIs' corrected facts;
  the export in the custom-data training format (:mod:`voce.data.custom`).
* :mod:`.taxonomies`: a tenant's taxonomy as versions (edit, diff, rollback, YAML), the taxonomy a batch uses,
  re-scoring a batch with a newer version.
"""
