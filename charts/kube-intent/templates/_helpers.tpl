{{/* Names */}}
{{- define "kube-intent.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "kube-intent.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "kube-intent.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "kube-intent.selectorLabels" -}}
app.kubernetes.io/name: {{ include "kube-intent.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "kube-intent.labels" -}}
helm.sh/chart: {{ include "kube-intent.chart" . }}
{{ include "kube-intent.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: kube-intent
{{- end }}

{{- define "kube-intent.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "kube-intent.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "kube-intent.serviceHost" -}}
{{- printf "%s.%s.svc" (include "kube-intent.fullname" .) .Release.Namespace }}
{{- end }}

{{- define "kube-intent.tlsSecretName" -}}
{{- if eq .Values.tls.mode "secret" }}
{{- .Values.tls.existingSecret }}
{{- else }}
{{- printf "%s-tls" (include "kube-intent.fullname" .) }}
{{- end }}
{{- end }}

{{- define "kube-intent.signingKeysSecretName" -}}
{{- default (printf "%s-signing-keys" (include "kube-intent.fullname" .)) .Values.signingKeys.existingSecret }}
{{- end }}

{{- define "kube-intent.image" -}}
{{- $tag := default .Chart.AppVersion .image.tag }}
{{- if .image.digest }}
{{- printf "%s@%s" .image.repository .image.digest }}
{{- else }}
{{- printf "%s:%s" .image.repository $tag }}
{{- end }}
{{- end }}

{{/* 2 replicas with PostgreSQL (HA), 1 with SQLite, unless replicaCount is set. */}}
{{- define "kube-intent.replicas" -}}
{{- if kindIs "invalid" .Values.replicaCount }}
{{- if eq .Values.audit.backend "postgres" }}2{{ else }}1{{ end }}
{{- else }}
{{- int .Values.replicaCount }}
{{- end }}
{{- end }}

{{/*
Refuse configurations that would install something broken; each message says what to set.
Included by the Deployment and the webhook configurations.
*/}}
{{- define "kube-intent.validate" -}}
{{- $replicas := int (include "kube-intent.replicas" .) }}
{{- if and (eq .Values.audit.backend "sqlite") (gt $replicas 1) }}
{{- fail (printf "audit.backend=sqlite supports one replica (SQLite has a single writer on a ReadWriteOnce volume), but replicaCount is %d: use audit.backend=postgres with audit.postgres.existingSecret for several replicas, or set replicaCount=1" $replicas) }}
{{- end }}
{{- if and (eq .Values.audit.backend "postgres") (not .Values.audit.postgres.existingSecret) }}
{{- fail "audit.backend=postgres needs audit.postgres.existingSecret: the name of a Secret whose key audit.postgres.secretKey (default \"dsn\") holds the connection string" }}
{{- end }}
{{- if and (eq .Values.tls.mode "secret") (not .Values.tls.existingSecret) }}
{{- fail "tls.mode=secret needs tls.existingSecret: a kubernetes.io/tls Secret (tls.crt, tls.key) in the release namespace" }}
{{- end }}
{{- if .Values.webhook.url }}
{{- if not (hasPrefix "https://" .Values.webhook.url) }}
{{- fail (printf "webhook.url must start with https:// (the API server only calls webhooks over TLS), got %q" .Values.webhook.url) }}
{{- end }}
{{- if and (not .Values.tls.caBundle) (ne .Values.tls.mode "certManager") }}
{{- fail "webhook.url needs tls.caBundle: the PEM CA certificate that verifies the external webhook's serving certificate (--set-file tls.caBundle=ca.crt)" }}
{{- end }}
{{- end }}
{{- if lt (int .Values.webhook.gracefulShutdownSeconds) (int .Values.webhook.timeoutSeconds) }}
{{- fail (printf "webhook.gracefulShutdownSeconds (%d) must be at least webhook.timeoutSeconds (%d), so that reviews in flight finish" (int .Values.webhook.gracefulShutdownSeconds) (int .Values.webhook.timeoutSeconds)) }}
{{- end }}
{{- $needed := add (int .Values.preStopSleepSeconds) (int .Values.webhook.gracefulShutdownSeconds) }}
{{- if le (int .Values.terminationGracePeriodSeconds) (int $needed) }}
{{- fail (printf "terminationGracePeriodSeconds (%d) must exceed preStopSleepSeconds + webhook.gracefulShutdownSeconds (%d)" (int .Values.terminationGracePeriodSeconds) (int $needed)) }}
{{- end }}
{{- end }}

{{/*
CEL: does resource name `k` match an accelerator pattern? Exact names and "prefix*" entries;
"!" exclusions are left to the webhook (over-selecting is safe, under-selecting is not). Every
deviceclass.resource.kubernetes.io/<class> name is selected: the webhook checks the class.
*/}}
{{- define "kube-intent.celResourceMatch" -}}
{{- $terms := list }}
{{- range .Values.accelerators.resources }}
{{- if not (hasPrefix "!" .) }}
{{- if not (regexMatch "^[A-Za-z0-9][-A-Za-z0-9_./]*\\*?$" .) }}
{{- fail (printf "accelerators.resources: %q is not a resource name or a prefix ending in *" .) }}
{{- end }}
{{- if hasSuffix "*" . }}
{{- $terms = append $terms (printf "k.startsWith('%s')" (trimSuffix "*" .)) }}
{{- else }}
{{- $terms = append $terms (printf "k == '%s'" .) }}
{{- end }}
{{- end }}
{{- end }}
{{- $terms = append $terms "k.startsWith('deviceclass.resource.kubernetes.io/')" }}
{{- join " || " $terms }}
{{- end }}

{{/* CEL: does container `c` request or limit an accelerator? */}}
{{- define "kube-intent.celContainer" -}}
{{- $match := include "kube-intent.celResourceMatch" . -}}
has(c.resources) && ((has(c.resources.limits) && c.resources.limits.exists(k, {{ $match }})) || (has(c.resources.requests) && c.resources.requests.exists(k, {{ $match }})))
{{- end }}

{{/*
The matchCondition that keeps fail-closed webhooks off everything but accelerator pods: a pod is
sent when a container or init container requests or limits an accelerator resource, or when it
has DRA claims (spec.resourceClaims; the webhook resolves their device classes). Ephemeral
containers cannot set resources, and are added through a subresource these webhooks do not match.
*/}}
{{- define "kube-intent.celRequestsAccelerators" -}}
{{- $c := include "kube-intent.celContainer" . -}}
object != null && has(object.spec) && ((has(object.spec.resourceClaims) && size(object.spec.resourceClaims) > 0) || object.spec.containers.exists(c, {{ $c }}) || (has(object.spec.initContainers) && object.spec.initContainers.exists(c, {{ $c }})))
{{- end }}

{{/* namespaceSelector shared by both webhooks. */}}
{{- define "kube-intent.namespaceSelector" -}}
matchExpressions:
  - key: kubernetes.io/metadata.name
    operator: NotIn
    values:
      {{- range (uniq (concat (list "kube-system" .Release.Namespace) .Values.webhook.excludeNamespaces)) }}
      - {{ . | quote }}
      {{- end }}
{{- end }}

{{/* Accelerator resource patterns for the webhook (JSON, read by pydantic-settings). */}}
{{- define "kube-intent.acceleratorResourcesJSON" -}}
{{- .Values.accelerators.resources | toJson }}
{{- end }}

{{/* clientConfig of a webhook: the in-cluster Service, or webhook.url for an external server. */}}
{{- define "kube-intent.clientConfig" -}}
{{- $root := .root -}}
{{- if $root.Values.webhook.url -}}
url: {{ printf "%s%s" (trimSuffix "/" $root.Values.webhook.url) .path | quote }}
{{- else -}}
service:
  name: {{ include "kube-intent.fullname" $root }}
  namespace: {{ $root.Release.Namespace }}
  path: {{ .path }}
  port: {{ int $root.Values.service.port }}
{{- end }}
{{- if .caBundle }}
caBundle: {{ .caBundle }}
{{- end }}
{{- end }}

{{/* The accelerator resource patterns for people (without the "!" exclusions). */}}
{{- define "kube-intent.acceleratorNames" -}}
{{- $names := list }}
{{- range .Values.accelerators.resources }}
{{- if not (hasPrefix "!" .) }}
{{- $names = append $names . }}
{{- end }}
{{- end }}
{{- join ", " $names }}
{{- end }}
