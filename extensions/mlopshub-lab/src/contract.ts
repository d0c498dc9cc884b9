/**
 * Generated: do not edit. The release pipeline's API as TypeScript types, made by
 * openapi-typescript from hub/mlopshub/services/pipeline/openapi.json with
 * `jlpm build:contract` (scripts/contract.mjs) in extensions/mlopshub-lab.
 * Change the document, then run that again; src/__tests__/contract.spec.ts
 * fails while this file differs from what the document makes.
 */

export interface paths {
    "/api/releases": {
        parameters: {
            query?: never;
            header?: never;
            path?: never;
            cookie?: never;
        };
        /** List releases the caller may read, newest first */
        get: {
            parameters: {
                query?: {
                    state?: "registered" | "gating" | "gates_failed" | "staging" | "awaiting_approval" | "approved" | "rejected" | "production" | "superseded" | "rolled_back" | "failed";
                    model?: string;
                };
                header?: never;
                path?: never;
                cookie?: never;
            };
            requestBody?: never;
            responses: {
                /** @description OK */
                200: {
                    headers: {
                        [name: string]: unknown;
                    };
                    content: {
                        "application/json": {
                            releases?: components["schemas"]["Release"][];
                        };
                    };
                };
                401: components["responses"]["Error"];
                422: components["responses"]["Error"];
            };
        };
        put?: never;
        /** Publish a model version; gates run in the background */
        post: {
            parameters: {
                query?: never;
                header?: never;
                path?: never;
                cookie?: never;
            };
            requestBody: {
                content: {
                    "application/json": components["schemas"]["PublishRequest"];
                };
            };
            responses: {
                /** @description OK */
                201: {
                    headers: {
                        [name: string]: unknown;
                    };
                    content: {
                        "application/json": {
                            id: string;
                            release?: components["schemas"]["Release"];
                        };
                    };
                };
                401: components["responses"]["Error"];
                403: components["responses"]["Error"];
                409: components["responses"]["Error"];
                422: components["responses"]["Error"];
            };
        };
        delete?: never;
        options?: never;
        head?: never;
        patch?: never;
        trace?: never;
    };
    "/api/releases/{id}": {
        parameters: {
            query?: never;
            header?: never;
            path?: never;
            cookie?: never;
        };
        /** One release: state, steps, gate results, endpoints */
        get: {
            parameters: {
                query?: never;
                header?: never;
                path: {
                    id: string;
                };
                cookie?: never;
            };
            requestBody?: never;
            responses: {
                /** @description OK */
                200: {
                    headers: {
                        [name: string]: unknown;
                    };
                    content: {
                        "application/json": components["schemas"]["Release"];
                    };
                };
                401: components["responses"]["Error"];
                403: components["responses"]["Error"];
                404: components["responses"]["Error"];
            };
        };
        put?: never;
        post?: never;
        delete?: never;
        options?: never;
        head?: never;
        patch?: never;
        trace?: never;
    };
    "/api/releases/{id}/approve": {
        parameters: {
            query?: never;
            header?: never;
            path?: never;
            cookie?: never;
        };
        get?: never;
        put?: never;
        /** Approve (a validator who did not publish it) */
        post: {
            parameters: {
                query?: never;
                header?: never;
                path: {
                    id: string;
                };
                cookie?: never;
            };
            requestBody: {
                content: {
                    "application/json": {
                        /** @description Why it may go to production (required, 1 to 2000 characters once stripped): the publisher and model risk read it */
                        comment: string;
                    };
                };
            };
            responses: {
                /** @description OK */
                200: {
                    headers: {
                        [name: string]: unknown;
                    };
                    content: {
                        "application/json": components["schemas"]["Release"];
                    };
                };
                401: components["responses"]["Error"];
                403: components["responses"]["Error"];
                404: components["responses"]["Error"];
                409: components["responses"]["Error"];
                422: components["responses"]["Error"];
            };
        };
        delete?: never;
        options?: never;
        head?: never;
        patch?: never;
        trace?: never;
    };
    "/api/releases/{id}/reject": {
        parameters: {
            query?: never;
            header?: never;
            path?: never;
            cookie?: never;
        };
        get?: never;
        put?: never;
        /** Reject, with the reason the publisher reads */
        post: {
            parameters: {
                query?: never;
                header?: never;
                path: {
                    id: string;
                };
                cookie?: never;
            };
            requestBody: {
                content: {
                    "application/json": {
                        reason: string;
                    };
                };
            };
            responses: {
                /** @description OK */
                200: {
                    headers: {
                        [name: string]: unknown;
                    };
                    content: {
                        "application/json": components["schemas"]["Release"];
                    };
                };
                401: components["responses"]["Error"];
                403: components["responses"]["Error"];
                404: components["responses"]["Error"];
                409: components["responses"]["Error"];
                422: components["responses"]["Error"];
            };
        };
        delete?: never;
        options?: never;
        head?: never;
        patch?: never;
        trace?: never;
    };
    "/api/models/{name}/rollback": {
        parameters: {
            query?: never;
            header?: never;
            path?: never;
            cookie?: never;
        };
        get?: never;
        put?: never;
        /** Put the previous production version back */
        post: {
            parameters: {
                query?: never;
                header?: never;
                path: {
                    name: string;
                };
                cookie?: never;
            };
            requestBody: {
                content: {
                    "application/json": {
                        reason: string;
                    };
                };
            };
            responses: {
                /** @description OK */
                200: {
                    headers: {
                        [name: string]: unknown;
                    };
                    content: {
                        "application/json": {
                            rolled_back?: components["schemas"]["Release"];
                            restored?: components["schemas"]["Release"];
                        };
                    };
                };
                401: components["responses"]["Error"];
                403: components["responses"]["Error"];
                409: components["responses"]["Error"];
                422: components["responses"]["Error"];
            };
        };
        delete?: never;
        options?: never;
        head?: never;
        patch?: never;
        trace?: never;
    };
    "/api/models/{name}/runs": {
        parameters: {
            query?: never;
            header?: never;
            path?: never;
            cookie?: never;
        };
        /** A batch model's scoring runs, newest first (in progress, then finished) */
        get: {
            parameters: {
                query?: never;
                header?: never;
                path: {
                    name: string;
                };
                cookie?: never;
            };
            requestBody?: never;
            responses: {
                /** @description OK */
                200: {
                    headers: {
                        [name: string]: unknown;
                    };
                    content: {
                        "application/json": {
                            runs?: components["schemas"]["BatchRun"][];
                        };
                    };
                };
                401: components["responses"]["Error"];
                403: components["responses"]["Error"];
                404: components["responses"]["Error"];
            };
        };
        put?: never;
        /**
         * Run a batch model now (the model's team or a validator)
         * @description Scores the release's input with the production version (or, stage 'staging', the version awaiting approval). Waits up to 'wait' seconds (default and at most 60): 200 with the finished run, else 202 with the run in progress (poll GET .../runs). 409 when there is no batch release at that stage or a run of it is in progress.
         */
        post: {
            parameters: {
                query?: never;
                header?: never;
                path: {
                    name: string;
                };
                cookie?: never;
            };
            requestBody?: {
                content: {
                    "application/json": {
                        /**
                         * @default production
                         * @enum {string}
                         */
                        stage?: "staging" | "production";
                        /** @default 60 */
                        wait?: number;
                    };
                };
            };
            responses: {
                /** @description the run finished (succeeded or failed) */
                200: {
                    headers: {
                        [name: string]: unknown;
                    };
                    content: {
                        "application/json": {
                            run?: components["schemas"]["BatchRun"];
                        };
                    };
                };
                /** @description the run is still going; poll GET .../runs */
                202: {
                    headers: {
                        [name: string]: unknown;
                    };
                    content: {
                        "application/json": {
                            run?: components["schemas"]["BatchRun"];
                        };
                    };
                };
                401: components["responses"]["Error"];
                403: components["responses"]["Error"];
                404: components["responses"]["Error"];
                409: components["responses"]["Error"];
                422: components["responses"]["Error"];
            };
        };
        delete?: never;
        options?: never;
        head?: never;
        patch?: never;
        trace?: never;
    };
    "/api/models/{name}/runs/{run}/output": {
        parameters: {
            query?: never;
            header?: never;
            path?: never;
            cookie?: never;
        };
        /** The scored CSV of a finished batch run (the model's team and model validators) */
        get: {
            parameters: {
                query?: never;
                header?: never;
                path: {
                    name: string;
                    run: string;
                };
                cookie?: never;
            };
            requestBody?: never;
            responses: {
                /** @description The scored rows */
                200: {
                    headers: {
                        [name: string]: unknown;
                    };
                    content: {
                        "text/csv": string;
                    };
                };
                401: components["responses"]["Error"];
                404: components["responses"]["Error"];
            };
        };
        put?: never;
        post?: never;
        delete?: never;
        options?: never;
        head?: never;
        patch?: never;
        trace?: never;
    };
    "/api/audit": {
        parameters: {
            query?: never;
            header?: never;
            path?: never;
            cookie?: never;
        };
        /**
         * The append-only audit log, filtered and paged
         * @description Validators and platform admins (custom:mlopshub:read-releases) read the whole log. With release_id, whoever may read that release reads its trail (its team's members); a release of another team answers 404, as one that does not exist. Entries come oldest first, at most limit of them: a full page may have more, ask again with after=<the last entry's id>. Filters combine (all must match); CSV has the columns id, at, actor, action, release_id, model, version, reason, details, chain.
         */
        get: {
            parameters: {
                query?: {
                    /** @description json (a list of entries) or csv (a file) */
                    format?: "json" | "csv";
                    /** @description Only this release's entries; lets its team read them */
                    release_id?: string;
                    /** @description Only entries about this model */
                    model?: string;
                    /** @description Only entries by this user (or 'pipeline') */
                    actor?: string;
                    /** @description Only entries of this action, e.g. approved, approval refused */
                    action?: string;
                    /** @description Entries at or after this ISO 8601 time; the zone is required (Z or +01:00) */
                    since?: string;
                    /** @description Entries before this ISO 8601 time (exclusive); the zone is required (Z or +01:00) */
                    until?: string;
                    /** @description Entries in one answer */
                    limit?: number;
                    /** @description Only entries with a greater id: the next page after that entry */
                    after?: number;
                };
                header?: never;
                path?: never;
                cookie?: never;
            };
            requestBody?: never;
            responses: {
                /** @description OK */
                200: {
                    headers: {
                        [name: string]: unknown;
                    };
                    content: {
                        "application/json": components["schemas"]["AuditEntry"][];
                        "text/csv": string;
                    };
                };
                401: components["responses"]["Error"];
                403: components["responses"]["Error"];
                404: components["responses"]["Error"];
                422: components["responses"]["Error"];
            };
        };
        put?: never;
        post?: never;
        delete?: never;
        options?: never;
        head?: never;
        patch?: never;
        trace?: never;
    };
    "/api/endpoints": {
        parameters: {
            query?: never;
            header?: never;
            path?: never;
            cookie?: never;
        };
        /** Live online endpoints the caller may read */
        get: {
            parameters: {
                query?: never;
                header?: never;
                path?: never;
                cookie?: never;
            };
            requestBody?: never;
            responses: {
                /** @description OK */
                200: {
                    headers: {
                        [name: string]: unknown;
                    };
                    content: {
                        "application/json": {
                            endpoints?: Record<string, never>[];
                        };
                    };
                };
                401: components["responses"]["Error"];
            };
        };
        put?: never;
        post?: never;
        delete?: never;
        options?: never;
        head?: never;
        patch?: never;
        trace?: never;
    };
    "/openapi.json": {
        parameters: {
            query?: never;
            header?: never;
            path?: never;
            cookie?: never;
        };
        /** This document */
        get: {
            parameters: {
                query?: never;
                header?: never;
                path?: never;
                cookie?: never;
            };
            requestBody?: never;
            responses: {
                /** @description OK */
                200: {
                    headers: {
                        [name: string]: unknown;
                    };
                    content?: never;
                };
            };
        };
        put?: never;
        post?: never;
        delete?: never;
        options?: never;
        head?: never;
        patch?: never;
        trace?: never;
    };
    "/api/teams": {
        parameters: {
            query?: never;
            header?: never;
            path?: never;
            cookie?: never;
        };
        /** Every team (archived ones too): settings, members, what it uses now. Needs custom:mlopshub:manage-teams (platform admins). */
        get: {
            parameters: {
                query?: never;
                header?: never;
                path?: never;
                cookie?: never;
            };
            requestBody?: never;
            responses: {
                /** @description OK */
                200: {
                    headers: {
                        [name: string]: unknown;
                    };
                    content: {
                        "application/json": {
                            teams?: components["schemas"]["Team"][];
                        };
                    };
                };
                401: components["responses"]["Error"];
                403: components["responses"]["Error"];
            };
        };
        put?: never;
        /** Create a team at runtime: its MLflow workspace, then its hub group with properties and members. Needs custom:mlopshub:manage-teams (platform admins). */
        post: {
            parameters: {
                query?: never;
                header?: never;
                path?: never;
                cookie?: never;
            };
            requestBody: {
                content: {
                    "application/json": components["schemas"]["TeamRequest"];
                };
            };
            responses: {
                /** @description Created */
                201: {
                    headers: {
                        [name: string]: unknown;
                    };
                    content: {
                        "application/json": components["schemas"]["Team"];
                    };
                };
                401: components["responses"]["Error"];
                403: components["responses"]["Error"];
                /** @description A field is wrong: `errors` names each one, and nothing was made or changed */
                422: {
                    headers: {
                        [name: string]: unknown;
                    };
                    content: {
                        "application/json": components["schemas"]["TeamErrors"];
                    };
                };
                502: components["responses"]["Error"];
            };
        };
        delete?: never;
        options?: never;
        head?: never;
        patch?: never;
        trace?: never;
    };
    "/api/teams/{name}": {
        parameters: {
            query?: never;
            header?: never;
            path: {
                name: string;
            };
            cookie?: never;
        };
        /** One team. Needs custom:mlopshub:manage-teams (platform admins). */
        get: {
            parameters: {
                query?: never;
                header?: never;
                path: {
                    name: string;
                };
                cookie?: never;
            };
            requestBody?: never;
            responses: {
                /** @description OK */
                200: {
                    headers: {
                        [name: string]: unknown;
                    };
                    content: {
                        "application/json": components["schemas"]["Team"];
                    };
                };
                401: components["responses"]["Error"];
                403: components["responses"]["Error"];
                404: components["responses"]["Error"];
            };
        };
        put?: never;
        post?: never;
        delete?: never;
        options?: never;
        head?: never;
        /** Change a team (only the fields given; a quota null lifts it; archived false unarchives). Needs custom:mlopshub:manage-teams (platform admins). */
        patch: {
            parameters: {
                query?: never;
                header?: never;
                path: {
                    name: string;
                };
                cookie?: never;
            };
            requestBody: {
                content: {
                    "application/json": components["schemas"]["TeamRequest"];
                };
            };
            responses: {
                /** @description OK */
                200: {
                    headers: {
                        [name: string]: unknown;
                    };
                    content: {
                        "application/json": components["schemas"]["Team"] & {
                            warnings?: string[];
                        };
                    };
                };
                401: components["responses"]["Error"];
                403: components["responses"]["Error"];
                404: components["responses"]["Error"];
                /** @description A field is wrong: `errors` names each one, and nothing was made or changed */
                422: {
                    headers: {
                        [name: string]: unknown;
                    };
                    content: {
                        "application/json": components["schemas"]["TeamErrors"];
                    };
                };
            };
        };
        trace?: never;
    };
    "/api/teams/{name}/archive": {
        parameters: {
            query?: never;
            header?: never;
            path: {
                name: string;
            };
            cookie?: never;
        };
        get?: never;
        put?: never;
        /** Archive: no new workspaces or releases; everything kept; running servers listed. Needs custom:mlopshub:manage-teams (platform admins). */
        post: {
            parameters: {
                query?: never;
                header?: never;
                path: {
                    name: string;
                };
                cookie?: never;
            };
            requestBody?: never;
            responses: {
                /** @description OK */
                200: {
                    headers: {
                        [name: string]: unknown;
                    };
                    content: {
                        "application/json": components["schemas"]["Team"] & {
                            running_servers?: Record<string, never>[];
                        };
                    };
                };
                401: components["responses"]["Error"];
                403: components["responses"]["Error"];
                404: components["responses"]["Error"];
            };
        };
        delete?: never;
        options?: never;
        head?: never;
        patch?: never;
        trace?: never;
    };
    "/api/teams/{name}/members/{user}": {
        parameters: {
            query?: never;
            header?: never;
            path: {
                name: string;
                user: string;
            };
            cookie?: never;
        };
        get?: never;
        /** Add a member. Needs custom:mlopshub:manage-teams (platform admins). */
        put: {
            parameters: {
                query?: never;
                header?: never;
                path: {
                    name: string;
                    user: string;
                };
                cookie?: never;
            };
            requestBody?: never;
            responses: {
                /** @description OK */
                200: {
                    headers: {
                        [name: string]: unknown;
                    };
                    content: {
                        "application/json": components["schemas"]["Team"];
                    };
                };
                401: components["responses"]["Error"];
                403: components["responses"]["Error"];
                404: components["responses"]["Error"];
                /** @description A field is wrong: `errors` names each one, and nothing was made or changed */
                422: {
                    headers: {
                        [name: string]: unknown;
                    };
                    content: {
                        "application/json": components["schemas"]["TeamErrors"];
                    };
                };
            };
        };
        post?: never;
        /** Remove a member: access ends at once. Needs custom:mlopshub:manage-teams (platform admins). */
        delete: {
            parameters: {
                query?: never;
                header?: never;
                path: {
                    name: string;
                    user: string;
                };
                cookie?: never;
            };
            requestBody?: never;
            responses: {
                /** @description OK */
                200: {
                    headers: {
                        [name: string]: unknown;
                    };
                    content: {
                        "application/json": components["schemas"]["Team"];
                    };
                };
                401: components["responses"]["Error"];
                403: components["responses"]["Error"];
                404: components["responses"]["Error"];
            };
        };
        options?: never;
        head?: never;
        patch?: never;
        trace?: never;
    };
    "/api/usage": {
        parameters: {
            query?: never;
            header?: never;
            path?: never;
            cookie?: never;
        };
        /** Server-, CPU-, memory- and GPU-hours per team (by=user: per team and user) over a period, and what runs now. Needs custom:mlopshub:manage-teams (platform admins). */
        get: {
            parameters: {
                query?: {
                    /** @description Default: 30 days before until */
                    since?: string;
                    /** @description Default: now */
                    until?: string;
                    by?: "team" | "user";
                    format?: "json" | "csv";
                };
                header?: never;
                path?: never;
                cookie?: never;
            };
            requestBody?: never;
            responses: {
                /** @description OK */
                200: {
                    headers: {
                        [name: string]: unknown;
                    };
                    content: {
                        "application/json": {
                            since?: string;
                            until?: string;
                            by?: string;
                            rows?: {
                                team?: string;
                                user?: string | null;
                                sessions?: number;
                                server_hours?: number;
                                cpu_hours?: number;
                                memory_gib_hours?: number;
                                gpu_hours?: number;
                            }[];
                            running?: Record<string, never>[];
                        };
                        "text/csv": string;
                    };
                };
                401: components["responses"]["Error"];
                403: components["responses"]["Error"];
                422: components["responses"]["Error"];
                503: components["responses"]["Error"];
            };
        };
        put?: never;
        post?: never;
        delete?: never;
        options?: never;
        head?: never;
        patch?: never;
        trace?: never;
    };
    "/api/usage/series": {
        parameters: {
            query?: never;
            header?: never;
            path?: never;
            cookie?: never;
        };
        /** Per-step totals per team, for a plot. Needs custom:mlopshub:manage-teams (platform admins). */
        get: {
            parameters: {
                query?: {
                    /** @description Default: 30 days before until */
                    since?: string;
                    /** @description Default: now */
                    until?: string;
                    step?: "day" | "hour";
                    team?: string;
                };
                header?: never;
                path?: never;
                cookie?: never;
            };
            requestBody?: never;
            responses: {
                /** @description OK */
                200: {
                    headers: {
                        [name: string]: unknown;
                    };
                    content: {
                        "application/json": {
                            points?: Record<string, never>[];
                        };
                    };
                };
                401: components["responses"]["Error"];
                403: components["responses"]["Error"];
                422: components["responses"]["Error"];
                503: components["responses"]["Error"];
            };
        };
        put?: never;
        post?: never;
        delete?: never;
        options?: never;
        head?: never;
        patch?: never;
        trace?: never;
    };
    "/api/catalog": {
        parameters: {
            query?: never;
            header?: never;
            path?: never;
            cookie?: never;
        };
        /** The profiles a team may be given (GPU ones marked) and the quota names. Needs custom:mlopshub:manage-teams (platform admins). */
        get: {
            parameters: {
                query?: never;
                header?: never;
                path?: never;
                cookie?: never;
            };
            requestBody?: never;
            responses: {
                /** @description OK */
                200: {
                    headers: {
                        [name: string]: unknown;
                    };
                    content: {
                        "application/json": {
                            profiles?: Record<string, never>[];
                            quotas?: string[];
                        };
                    };
                };
                401: components["responses"]["Error"];
                403: components["responses"]["Error"];
            };
        };
        put?: never;
        post?: never;
        delete?: never;
        options?: never;
        head?: never;
        patch?: never;
        trace?: never;
    };
    "/api/monitoring": {
        parameters: {
            query?: never;
            header?: never;
            path?: never;
            cookie?: never;
        };
        /** Served models the caller may read, marked when their last drift check found drift */
        get: {
            parameters: {
                query?: never;
                header?: never;
                path?: never;
                cookie?: never;
            };
            requestBody?: never;
            responses: {
                /** @description OK */
                200: {
                    headers: {
                        [name: string]: unknown;
                    };
                    content: {
                        "application/json": components["schemas"]["MonitoringList"];
                    };
                };
                401: components["responses"]["Error"];
            };
        };
        put?: never;
        post?: never;
        delete?: never;
        options?: never;
        head?: never;
        patch?: never;
        trace?: never;
    };
    "/api/monitoring/{name}": {
        parameters: {
            query?: never;
            header?: never;
            path?: never;
            cookie?: never;
        };
        /** Traffic, capture, drift and quality of a served model over a window */
        get: {
            parameters: {
                query?: {
                    /** @description production (default when served) or staging */
                    stage?: "production" | "staging";
                    /** @description The last day (default), the last week, or since the version was promoted */
                    window?: "day" | "week" | "promotion";
                };
                header?: never;
                path: {
                    name: string;
                };
                cookie?: never;
            };
            requestBody?: never;
            responses: {
                /** @description OK */
                200: {
                    headers: {
                        [name: string]: unknown;
                    };
                    content: {
                        "application/json": components["schemas"]["Monitoring"];
                    };
                };
                401: components["responses"]["Error"];
                404: components["responses"]["Error"];
                422: components["responses"]["Error"];
            };
        };
        put?: never;
        post?: never;
        delete?: never;
        options?: never;
        head?: never;
        patch?: never;
        trace?: never;
    };
    "/api/monitoring/{name}/drift": {
        parameters: {
            query?: never;
            header?: never;
            path?: never;
            cookie?: never;
        };
        get?: never;
        put?: never;
        /** Check drift now over the window; the result is kept and a new drift is an audit entry */
        post: {
            parameters: {
                query?: {
                    /** @description production (default when served) or staging */
                    stage?: "production" | "staging";
                    /** @description The last day (default), the last week, or since the version was promoted */
                    window?: "day" | "week" | "promotion";
                };
                header?: never;
                path: {
                    name: string;
                };
                cookie?: never;
            };
            requestBody?: never;
            responses: {
                /** @description OK */
                200: {
                    headers: {
                        [name: string]: unknown;
                    };
                    content: {
                        "application/json": components["schemas"]["Drift"];
                    };
                };
                401: components["responses"]["Error"];
                404: components["responses"]["Error"];
                422: components["responses"]["Error"];
            };
        };
        delete?: never;
        options?: never;
        head?: never;
        patch?: never;
        trace?: never;
    };
    "/api/monitoring/{name}/settings": {
        parameters: {
            query?: never;
            header?: never;
            path?: never;
            cookie?: never;
        };
        /** The model's capture settings */
        get: {
            parameters: {
                query?: never;
                header?: never;
                path: {
                    name: string;
                };
                cookie?: never;
            };
            requestBody?: never;
            responses: {
                /** @description OK */
                200: {
                    headers: {
                        [name: string]: unknown;
                    };
                    content: {
                        "application/json": components["schemas"]["CaptureSettings"];
                    };
                };
                401: components["responses"]["Error"];
                404: components["responses"]["Error"];
            };
        };
        /** Change the model's capture settings (its team, or a platform admin); fields left out are kept */
        put: {
            parameters: {
                query?: never;
                header?: never;
                path: {
                    name: string;
                };
                cookie?: never;
            };
            requestBody: {
                content: {
                    "application/json": components["schemas"]["CaptureSettingsChange"];
                };
            };
            responses: {
                /** @description OK */
                200: {
                    headers: {
                        [name: string]: unknown;
                    };
                    content: {
                        "application/json": components["schemas"]["CaptureSettings"];
                    };
                };
                401: components["responses"]["Error"];
                403: components["responses"]["Error"];
                404: components["responses"]["Error"];
                422: components["responses"]["Error"];
            };
        };
        post?: never;
        delete?: never;
        options?: never;
        head?: never;
        patch?: never;
        trace?: never;
    };
}
export type webhooks = Record<string, never>;
export interface components {
    schemas: {
        Error: {
            error: string;
            message: string;
            status: number;
            /** @description the request field at fault (422 only) */
            field?: string;
        };
        PublishRequest: {
            /**
             * @description runs:/<run_id>/<path> or models:/<name>/<version>
             * @example runs:/0123abcd/model
             */
            model_uri: string;
            /** @description a model name: 1 to 63 letters, digits, '_', '.' or '-', starting with a letter or digit */
            name: string;
            /** @enum {string} */
            kind: "online" | "batch";
            description?: string;
            batch?: components["schemas"]["BatchSettings"];
        };
        Step: {
            /** @enum {string} */
            name?: "registered" | "gates" | "staging" | "approval" | "production";
            /** @enum {string} */
            status?: "pending" | "running" | "passed" | "failed";
            started?: string | null;
            finished?: string | null;
            detail?: string;
        };
        GateResult: {
            name?: string;
            passed?: boolean;
            reason?: string;
            fix?: string;
            details?: Record<string, never>;
        };
        Release: {
            id?: string;
            model_name?: string;
            version?: string;
            model_uri?: string;
            run_id?: string | null;
            team?: string;
            kind?: string;
            description?: string;
            publisher?: string;
            /** @enum {string} */
            state?: "registered" | "gating" | "gates_failed" | "staging" | "awaiting_approval" | "approved" | "rejected" | "production" | "superseded" | "rolled_back" | "failed";
            steps?: components["schemas"]["Step"][];
            gate_results?: components["schemas"]["GateResult"][];
            /** @description online: the endpoint URL of each stage. batch: staging is the output CSV of the staging run; production is the folder scheduled and on-demand runs write to */
            endpoints?: {
                [key: string]: string;
            };
            approver?: string | null;
            comment?: string;
            reason?: string;
            created?: string;
            updated?: string;
            promoted?: string | null;
            interruptions?: number;
            /** @description batch models: what they score and when; null for online models */
            batch?: components["schemas"]["BatchSettings"] | null;
            /** @description Content digest (sha256:<hex>) of the pipeline's copy of the version, taken at registration; every load of the copy is checked against it */
            model_digest?: string | null;
        };
        AuditEntry: {
            id?: number;
            at?: string;
            actor?: string;
            action?: string;
            release_id?: string | null;
            model?: string | null;
            version?: string | null;
            reason?: string;
            details?: Record<string, never>;
            /** @description SHA-256 chaining this entry to the one before */
            chain?: string;
        };
        /** @description What a batch model scores and when. Required for kind 'batch', refused for 'online'. */
        BatchSettings: {
            /**
             * @description DVC-tracked CSV, relative to the project (no '..', not absolute)
             * @example data/new_loans.csv
             */
            input: string;
            /**
             * @description git branch, tag or commit of the input's version
             * @default main
             */
            rev?: string;
            /**
             * @description cron in UTC as a Kubernetes CronJob takes it: five fields (names allowed, e.g. '0 6 * * MON-FRI') or a macro such as '@daily'; none: run on demand only
             * @example 0 6 * * *
             */
            schedule?: string | null;
            /** @description the project's folder or git URL; default: the project the run was trained in (run tag mlopshub.project) */
            repo?: string | null;
        };
        /** @description One scoring run of a batch model (audited as 'batch run'). */
        BatchRun: {
            run?: string;
            model?: string;
            version?: string;
            release_id?: string;
            /** @enum {string} */
            stage?: "staging" | "production";
            /** @enum {string} */
            status?: "running" | "succeeded" | "failed";
            /** @description who started it; 'pipeline' for staging and scheduled runs */
            actor?: string;
            started?: string;
            finished?: string | null;
            /** @description path of the scored CSV (input columns and 'prediction') */
            output?: string | null;
            /** @description the .json beside the output: model_uri (models:/<name>/<version>), repo, input {path, rev, md5, rows}, output, scored_at */
            record?: Record<string, never> | null;
            input_md5?: string | null;
            rows?: number | null;
            /** @description why it failed; empty otherwise */
            reason?: string;
        };
        /** @description A team's fields (the catalog's team, profiles/schema.json, plus name and members). Create: name and profiles required. */
        TeamRequest: {
            name?: string;
            display_name?: string;
            members?: string[];
            profiles?: string[];
            quotas?: {
                max_servers?: number | null;
                servers_per_user?: number | null;
                cpu?: number | null;
                /** @example 64G */
                memory?: string | null;
                gpus?: number | null;
            };
            release?: {
                thresholds?: Record<string, never>;
                holdout?: Record<string, never>;
            };
            archived?: string | boolean;
        };
        Team: {
            name: string;
            display_name: string;
            members: string[];
            profiles: string[];
            gpu_profiles?: string[];
            quotas: Record<string, never>;
            release: Record<string, never>;
            archived: string | null;
            use: {
                servers?: number;
                cpu?: number;
                memory_bytes?: number;
                gpus?: number;
                running?: Record<string, never>[];
            };
        };
        TeamErrors: {
            status?: number;
            message: string;
            errors: {
                [key: string]: string;
            };
        };
        CaptureSettings: {
            /** @description Share of requests captured */
            sample_rate: number;
            /** @description Days a capture and its outcome are kept */
            retention_days: number;
            /** @description Columns never written (personal data) */
            exclude_columns: string[];
        };
        CaptureSettingsChange: {
            /** @description Share of requests captured */
            sample_rate?: number;
            /** @description Days a capture and its outcome are kept */
            retention_days?: number;
            /** @description Columns never written (personal data) */
            exclude_columns?: string[];
        };
        FeatureDrift: {
            name: string;
            /** @enum {string} */
            kind: "numeric" | "categorical";
            psi: number | null;
            /** @enum {string|null} */
            test?: "ks" | "chi2" | null;
            p_value?: number | null;
            drifted: boolean;
            reason?: string | null;
            /** @description The baseline's bins (edges, null for an open end) or categories, and shares */
            baseline?: Record<string, never>;
            /** @description The live shares over the same bins, rows and the missing share */
            live?: Record<string, never>;
        };
        Drift: {
            available: boolean;
            /** @description Why drift is unavailable or not checked yet */
            reason?: string | null;
            baseline?: {
                /** @description Training data path -> DVC version */
                data?: {
                    [key: string]: string;
                };
                rows?: number | null;
            } | null;
            thresholds?: {
                psi?: number;
                p_value?: number;
            };
            checked_at?: number | null;
            drifted: boolean;
            rows?: number;
            features?: components["schemas"]["FeatureDrift"][];
            prediction?: components["schemas"]["FeatureDrift"] | null;
            history?: {
                t?: number;
                version?: string;
                drifted?: boolean;
                psi?: {
                    [key: string]: number | null;
                };
            }[];
        };
        Monitoring: {
            model: string;
            team: string;
            /** @enum {string} */
            stage: "production" | "staging";
            version: string;
            window: {
                name?: string;
                since?: number;
                until?: number;
            };
            traffic: {
                bucket_seconds?: number;
                requests?: number;
                errors?: number;
                p50_ms?: number | null;
                p99_ms?: number | null;
                series?: {
                    t?: number;
                    requests?: number;
                    errors?: number;
                    p50_ms?: number | null;
                    p99_ms?: number | null;
                }[];
            };
            capture: components["schemas"]["CaptureSettings"] & {
                captured?: number;
                dropped?: number;
            };
            drift: components["schemas"]["Drift"];
            quality: {
                available?: boolean;
                reason?: string | null;
                outcomes?: number;
                metrics?: {
                    name?: string;
                    value?: number | null;
                    reason?: string | null;
                    approval?: number | null;
                    threshold?: Record<string, never> | null;
                }[];
                series?: {
                    t?: number;
                    values?: {
                        [key: string]: number | null;
                    };
                }[];
            };
        };
        MonitoringList: {
            models: {
                model: string;
                team: string;
                drifted: boolean;
                checked_at?: number | null;
                captured?: number;
                stages: {
                    [key: string]: {
                        version?: string;
                        since?: number;
                    };
                };
            }[];
        };
    };
    responses: {
        /** @description Refused, with the reason */
        Error: {
            headers: {
                [name: string]: unknown;
            };
            content: {
                "application/json": components["schemas"]["Error"];
            };
        };
    };
    parameters: never;
    requestBodies: never;
    headers: never;
    pathItems: never;
}
export type $defs = Record<string, never>;
export type operations = Record<string, never>;
