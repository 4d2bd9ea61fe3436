{{/* Name of the chart, truncated to the DNS label limit. */}}
{{- define "tollgate.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Fully qualified name of the release's objects. */}}
{{- define "tollgate.fullname" -}}
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

{{/* The standard labels on every object. */}}
{{- define "tollgate.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{ include "tollgate.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/component: operator
app.kubernetes.io/part-of: tollgate
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{/* Labels that select the operator's pods; never change them on upgrade. */}}
{{- define "tollgate.selectorLabels" -}}
app.kubernetes.io/name: {{ include "tollgate.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/* The ServiceAccount the operator runs as. */}}
{{- define "tollgate.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "tollgate.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* The Secret holding the GitHub credentials. */}}
{{- define "tollgate.githubSecretName" -}}
{{- default (printf "%s-github" (include "tollgate.fullname" .)) .Values.github.existingSecret }}
{{- end }}

{{/* "true" when leader election is on: asked for, or more than one replica. */}}
{{- define "tollgate.leaderElect" -}}
{{- if or .Values.leaderElection.enabled (gt (int .Values.replicaCount) 1) }}true{{ end }}
{{- end }}

{{/* The Lease's name. */}}
{{- define "tollgate.leaseName" -}}
{{- default (include "tollgate.fullname" .) .Values.leaderElection.leaseName }}
{{- end }}

{{/* The operator's configuration file, exactly the format src/config.rs reads. */}}
{{- define "tollgate.configFile" -}}
{{- $config := deepCopy .Values.config }}
{{- $defaults := $config.defaults | default dict }}
{{- if not $defaults.namespace }}
{{- $_ := set $defaults "namespace" .Release.Namespace }}
{{- end }}
{{- $_ := set $config "defaults" $defaults }}
{{- with .Values.prometheus }}
{{- if .url }}
{{- $prom := dict "url" .url "timeout" .timeout }}
{{- if .bearerTokenSecret.name }}
{{- $_ := set $prom "bearerTokenFile" "/etc/tollgate/prometheus/token/token" }}
{{- end }}
{{- if .caSecret.name }}
{{- $_ := set $prom "caFile" "/etc/tollgate/prometheus/ca/ca.crt" }}
{{- end }}
{{- $_ := set $config "prometheus" $prom }}
{{- end }}
{{- end }}
{{- toYaml $config }}
{{- end }}

{{/*
The namespaces a namespaced install watches (JSON list): watch.namespaces and
the release namespace (the operator's own, added by the operator too).
*/}}
{{- define "tollgate.watchedNamespaces" -}}
{{- $ns := concat .Values.watch.namespaces (list .Release.Namespace) | uniq }}
{{- toJson $ns }}
{{- end }}

{{/* Refuse value combinations the schema cannot express. */}}
{{- define "tollgate.validate" -}}
{{- $gh := .Values.github }}
{{- if and $gh.createSecret.enabled $gh.existingSecret }}
{{- fail "github: set either existingSecret or createSecret.enabled, not both" }}
{{- end }}
{{- if $gh.createSecret.enabled }}
{{- if not $gh.createSecret.webhookSecret }}
{{- fail "github.createSecret.webhookSecret is required: GitHub signs every webhook delivery with it" }}
{{- end }}
{{- if and (eq $gh.auth "app") (not (and $gh.createSecret.appId $gh.createSecret.privateKey)) }}
{{- fail "github.createSecret: auth is app, so appId and privateKey are required" }}
{{- end }}
{{- if and (eq $gh.auth "token") (not $gh.createSecret.token) }}
{{- fail "github.createSecret: auth is token, so token is required" }}
{{- end }}
{{- end }}
{{- if .Values.watch.namespaces }}
{{- $watched := include "tollgate.watchedNamespaces" . | fromJsonArray }}
{{- $config := .Values.config }}
{{- $defaults := $config.defaults | default dict }}
{{- with $defaults.namespace }}
{{- if not (has . $watched) }}
{{- fail (printf "config.defaults.namespace %s is not watched: add it to watch.namespaces (the operator refuses to write gates it does not watch)" .) }}
{{- end }}
{{- end }}
{{- range $i, $p := $config.policies }}
{{- if and $p.namespace (not (has $p.namespace $watched)) }}
{{- fail (printf "config.policies[%d].namespace %s is not watched: add it to watch.namespaces (the operator refuses to write gates it does not watch)" $i $p.namespace) }}
{{- end }}
{{- end }}
{{- range $i, $r := $config.autoPause }}
{{- if and $r.namespace (not (has $r.namespace $watched)) }}
{{- fail (printf "config.autoPause[%d].namespace %s is not watched: add it to watch.namespaces (the operator refuses to write pauses it does not watch)" $i $r.namespace) }}
{{- end }}
{{- end }}
{{- end }}
{{- if and .Values.admissionPolicy.enabled (semverCompare "<1.30.0-0" .Capabilities.KubeVersion.Version) }}
{{- fail (printf "admissionPolicy.enabled needs Kubernetes 1.30 or later (ValidatingAdmissionPolicy v1); this cluster is %s" .Capabilities.KubeVersion.Version) }}
{{- end }}
{{- end }}
