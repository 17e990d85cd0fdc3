-- The identity provider recognised from the requests on each connection (#17): its kind, when it
-- was first recognised and when it was last seen. Written with the connection's last request (at
-- most about once a minute per node), not on every request.
ALTER TABLE scim_connections ADD COLUMN detected_idp TEXT;
ALTER TABLE scim_connections ADD COLUMN detected_idp_first_seen_us INTEGER;
ALTER TABLE scim_connections ADD COLUMN detected_idp_last_seen_us INTEGER;
