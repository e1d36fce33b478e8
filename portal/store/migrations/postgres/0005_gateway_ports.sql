-- Each protocol has its own session port on a gateway: 7993 SSH and SFTP,
-- 7994 RDP, 7995 VNC.
ALTER TABLE gateways ADD COLUMN rdp_port BIGINT NOT NULL DEFAULT 7994;
ALTER TABLE gateways ADD COLUMN vnc_port BIGINT NOT NULL DEFAULT 7995;
