-- A deleted (retained) user keeps its e-mail rows, so that the directory and the access check find
-- it by e-mail as they do by userName or externalId. Users deleted before this lost theirs: put them
-- back from the search copy of the document, where `emails[*].value` is folded as `value_ci` is.
INSERT INTO resource_emails (resource_pk, connection_id, value_ci)
SELECT DISTINCT r.pk, r.connection_id, e.value ->> 'value'
FROM resources r
CROSS JOIN LATERAL jsonb_array_elements(
    CASE WHEN jsonb_typeof(r.doc_ci -> 'emails') = 'array' THEN r.doc_ci -> 'emails' ELSE '[]'::jsonb END
) AS e(value)
WHERE r.kind = 'User'
  AND r.deleted_us IS NOT NULL
  AND jsonb_typeof(e.value -> 'value') = 'string'
  AND NOT EXISTS (SELECT 1 FROM resource_emails x WHERE x.resource_pk = r.pk);
